// A conversation as a chat: the request's messages (chat completions,
// Responses input, Anthropic messages) and the answer, with roles, tool
// calls and tool results readable and reasoning collapsed.
import { h } from './dom.js';

function pretty(v) {
  if (typeof v === 'string') {
    try { return JSON.stringify(JSON.parse(v), null, 2); } catch { return v; }
  }
  return JSON.stringify(v, null, 2);
}

function reasoning(text) {
  if (!text) return null;
  return h('details', { class: 'reasoning' }, h('summary', {}, `Reasoning (${text.length} chars)`), h('div', { class: 'text' }, text));
}

function toolCall(c) {
  const fn = c.function || {};
  const name = fn.name || c.name || '(unnamed)';
  const args = fn.arguments ?? c.arguments ?? c.input;
  return h('div', { class: 'tool-call' },
    h('div', { class: 'tool-head' }, h('span', { class: 'badge info' }, 'tool call'), ' ', h('code', {}, name),
      c.id || c.call_id ? h('span', { class: 'muted' }, ` · ${c.id || c.call_id}`) : null),
    args !== undefined && args !== '' ? h('pre', { class: 'code' }, pretty(args)) : null);
}

/** Message content: a string, or parts (text, images, tool use/results). */
function content(c) {
  if (c === null || c === undefined || c === '') return [];
  if (typeof c === 'string') return [h('div', { class: 'text' }, c)];
  if (!Array.isArray(c)) return [h('pre', { class: 'code' }, pretty(c))];
  return c.map((p) => {
    if (typeof p === 'string') return h('div', { class: 'text' }, p);
    switch (p.type) {
      case 'text': case 'input_text': case 'output_text': return h('div', { class: 'text' }, p.text ?? '');
      case 'thinking': return reasoning(p.thinking);
      case 'image_url': case 'input_image': case 'image': return h('div', { class: 'muted' }, '[image]');
      case 'tool_use': return toolCall({ id: p.id, name: p.name, input: p.input });
      case 'tool_result': return h('div', { class: 'tool-result' }, h('div', { class: 'tool-head' }, h('span', { class: 'badge neutral' }, 'tool result'), h('span', { class: 'muted' }, ` · ${p.tool_use_id || ''}`)), ...content(p.content));
      default: return h('pre', { class: 'code' }, pretty(p));
    }
  });
}

function bubble(role, parts, extra = {}) {
  const r = role || 'unknown';
  return h('article', { class: `msg role-${r.replace(/[^a-z_]/gi, '')}${extra.answer ? ' answer' : ''}`, 'aria-label': `${r} message` },
    h('header', {}, h('span', { class: 'role' }, r), extra.note ? h('span', { class: 'muted' }, ' · ' + extra.note) : null),
    parts.filter(Boolean));
}

function message(m, extra) {
  if (m.type === 'function_call') return bubble('assistant', [toolCall(m)], extra);
  if (m.type === 'function_call_output') return bubble('tool', [h('div', { class: 'muted' }, `result of ${m.call_id || ''}`), ...content(m.output)], extra);
  if (m.type === 'reasoning') return bubble('assistant', [reasoning((m.summary || []).map((s) => s.text).join('\n') || pretty(m.content || ''))], extra);
  const parts = [reasoning(m.reasoning_content || m.reasoning), ...content(m.content)];
  for (const c of m.tool_calls || []) parts.push(toolCall(c));
  const note = m.role === 'tool' && m.tool_call_id ? `result of ${m.tool_call_id}` : m.name ? m.name : extra?.note;
  return bubble(m.role, parts, { ...extra, note });
}

/** The request's messages, in order. */
function requestMessages(body) {
  if (!body || typeof body !== 'object') return [];
  const out = [];
  if (body.system) out.push({ role: 'system', content: body.system });
  if (body.instructions) out.push({ role: 'system', content: body.instructions });
  if (Array.isArray(body.messages)) out.push(...body.messages);
  if (typeof body.input === 'string') out.push({ role: 'user', content: body.input });
  else if (Array.isArray(body.input)) out.push(...body.input.map((m) => (m.role || m.type ? m : { role: 'user', content: m })));
  if (typeof body.prompt === 'string') out.push({ role: 'user', content: body.prompt });
  return out;
}

/** The answer's messages: the assembled stream, or the JSON body. */
function answerMessages(d) {
  const a = d.assembled && d.assembled.message;
  if (a) return [{ role: a.role, content: a.content, reasoning_content: a.reasoning, tool_calls: a.tool_calls }];
  const b = d.response && d.response.body;
  if (!b) return [];
  if (Array.isArray(b.choices)) return b.choices.map((c) => c.message).filter(Boolean);
  if (Array.isArray(b.output)) return b.output.map((o) => (o.type === 'message' ? { role: o.role, content: o.content } : o));
  if (b.type === 'message' && Array.isArray(b.content)) return [{ role: b.role, content: b.content }];
  return [];
}

export function renderChat(d) {
  const msgs = requestMessages(d.request && d.request.body);
  const answer = answerMessages(d);
  if (!msgs.length && !answer.length) return h('p', { class: 'muted' }, 'No conversation in this request.');
  return h('div', { class: 'chat' },
    msgs.map((m) => message(m)),
    answer.map((m) => message(m, { answer: true, note: 'answer' })));
}
