// One request: summary, actions (copy as curl, copy JSON, replay), the
// conversation, request and response side by side (headers, collapsible
// bodies, the stream's timeline and assembled message, parsed beside raw),
// and every attempt.
import { h, mount, clear, fmtMs, fmtTime, fmtNum, statusBadge, outcomeBadge, jsonTree, copy, toast } from './dom.js';
import { api } from './api.js';
import { renderChat } from './chat.js';

const MAX_FRAMES = 400;

function section(title, ...body) {
  const id = 'sec-' + title.toLowerCase().replace(/[^a-z]+/g, '-');
  return h('section', { class: 'card', 'aria-labelledby': id }, h('h2', { id }, title), body);
}

function headersTable(headers) {
  if (!headers || typeof headers !== 'object' || !Object.keys(headers).length) return h('p', { class: 'muted' }, 'No headers.');
  return h('table', { class: 'kv' }, h('tbody', {}, Object.entries(headers).map(([k, v]) =>
    h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, Array.isArray(v) ? v.join(', ') : String(v))))));
}

function body(json, text, truncated) {
  const note = truncated ? h('p', { class: 'warn-text' }, 'Truncated in the log (over max_body_bytes).') : null;
  if (json !== null && json !== undefined) return [note, h('div', { class: 'json' }, jsonTree(json))];
  if (text) return [note, h('pre', { class: 'code' }, text)];
  return [h('p', { class: 'muted' }, 'No body.')];
}

function assembledView(a) {
  const m = a.message || {};
  return h('div', { class: 'assembled' },
    m.reasoning ? h('details', { class: 'reasoning' }, h('summary', {}, 'Reasoning'), h('div', { class: 'text' }, m.reasoning)) : null,
    h('h3', {}, 'Content'),
    m.content ? h('div', { class: 'text answer-text' }, m.content) : h('p', { class: 'muted' }, 'No content.'),
    (m.tool_calls || []).length ? [h('h3', {}, 'Tool calls'), m.tool_calls.map((c) => h('div', { class: 'tool-call' },
      h('div', { class: 'tool-head' }, h('code', {}, c.function?.name || ''), h('span', { class: 'muted' }, ` · ${c.id || ''}`)),
      h('pre', { class: 'code' }, prettyArgs(c.function?.arguments))))] : null,
    h('dl', { class: 'facts small' },
      h('dt', {}, 'Finish'), h('dd', {}, m.finish_reason || '–'),
      h('dt', {}, 'Frames'), h('dd', {}, `${a.frames}${a.done ? ', ended by [DONE]' : ', no [DONE]'}`),
      h('dt', {}, 'First token'), h('dd', {}, fmtMs(a.first_token_ms)),
      a.unrecognized_frames ? [h('dt', {}, 'Not understood'), h('dd', {}, a.unrecognized_frames)] : null),
    (a.errors || []).length ? h('div', { class: 'error' }, 'Stream errors: ', JSON.stringify(a.errors)) : null);
}

function prettyArgs(s) {
  try { return JSON.stringify(JSON.parse(s), null, 2); } catch { return s || ''; }
}

function timeline(frames) {
  const rows = frames.slice(0, MAX_FRAMES);
  let prev = 0;
  const table = h('table', { class: 'timeline' },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col', class: 'num' }, 'At'), h('th', { scope: 'col', class: 'num' }, 'Gap'), h('th', { scope: 'col' }, 'Frame'))),
    h('tbody', {}, rows.map((f) => {
      const gap = f.t_ms - prev;
      prev = f.t_ms;
      return h('tr', {}, h('td', { class: 'num' }, fmtMs(f.t_ms)), h('td', { class: 'num muted' }, '+' + fmtMs(gap)),
        h('td', {}, h('code', { class: 'frame' }, String(f.data).trimEnd())));
    })));
  return h('details', { class: 'frames' },
    h('summary', {}, `Stream timeline: ${frames.length} frames`),
    frames.length > MAX_FRAMES ? h('p', { class: 'muted' }, `First ${MAX_FRAMES} shown.`) : null,
    h('div', { class: 'table-wrap' }, table));
}

function attemptsTable(list) {
  if (!Array.isArray(list) || !list.length) return h('p', { class: 'muted' }, 'No backend was tried (answered by the proxy or the cache).');
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('thead', {}, h('tr', {}, ['#', 'Backend', 'URL', 'Upstream model', 'Status', 'Latency', 'Error'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, list.map((a, i) => h('tr', {},
      h('td', {}, i + 1), h('td', {}, a.backend), h('td', { class: 'muted break' }, a.url), h('td', {}, a.upstream_model || '–'),
      h('td', {}, statusBadge(a.status)), h('td', { class: 'num' }, fmtMs(a.latency_ms)), h('td', { class: 'error-text' }, a.error || '',
        Array.isArray(a.dropped) && a.dropped.length
          ? h('div', { class: 'muted' }, `Not sent (translation): ${a.dropped.join(', ')}`) : null))))));
}

function replayResult(r) {
  const out = h('section', { class: 'card replay', 'aria-labelledby': 'replay-title', tabindex: '-1' },
    h('h2', { id: 'replay-title' }, 'Replay result'),
    h('dl', { class: 'facts' },
      h('dt', {}, 'Status'), h('dd', {}, statusBadge(r.status)),
      h('dt', {}, 'Latency'), h('dd', {}, fmtMs(r.latency_ms)),
      h('dt', {}, 'New request'), h('dd', {}, r.id ? h('a', { href: `#/logs/${encodeURIComponent(r.id)}` }, r.id) : '–')),
    r.assembled ? assembledView(r.assembled) : body(r.body, r.body_text, r.body_truncated));
  return out;
}

export async function renderDetail(main, id) {
  const d = await api(`api/logs/${encodeURIComponent(id)}`);
  const replaySlot = h('div');
  const replayBtn = h('button', { type: 'button', class: 'primary', id: 'replay' }, 'Replay');
  replayBtn.addEventListener('click', async () => {
    replayBtn.disabled = true;
    replayBtn.textContent = 'Replaying…';
    try {
      const r = await api(`api/logs/${encodeURIComponent(id)}/replay`, { method: 'POST', body: {} });
      clear(replaySlot).append(replayResult(r));
      replaySlot.firstChild.focus();
    } catch (e) {
      clear(replaySlot).append(h('p', { class: 'error', role: 'alert' }, `Replay failed: ${e.message}`));
    } finally {
      replayBtn.disabled = false;
      replayBtn.textContent = 'Replay';
    }
  });

  const facts = h('dl', { class: 'facts' },
    h('dt', {}, 'Time'), h('dd', {}, fmtTime(d.started_at, true)),
    h('dt', {}, 'Model'), h('dd', {}, d.model || '–'),
    h('dt', {}, 'Backend'), h('dd', {}, d.backend || '–'),
    h('dt', {}, 'Status'), h('dd', {}, statusBadge(d.status)),
    h('dt', {}, 'Outcome'), h('dd', {}, outcomeBadge(d)),
    h('dt', {}, 'Stream'), h('dd', {}, d.stream ? 'yes' : 'no'),
    h('dt', {}, 'Attempts'), h('dd', {}, d.attempts),
    h('dt', {}, 'Latency'), h('dd', {}, fmtMs(d.latency_ms)),
    h('dt', {}, 'Time to first byte'), h('dd', {}, fmtMs(d.ttfb_ms)),
    h('dt', {}, 'Tokens'), h('dd', {}, `${fmtNum(d.prompt_tokens)} in · ${fmtNum(d.completion_tokens)} out · ${fmtNum(d.total_tokens)} total`),
    h('dt', {}, 'Endpoint'), h('dd', {}, `${d.method} ${d.path}`),
    h('dt', {}, 'Client'), h('dd', {}, d.client_addr || '–'),
    d.client_request_id ? [h('dt', {}, 'Client request id'), h('dd', {}, h('code', {}, d.client_request_id))] : null,
    d.cache ? [h('dt', {}, 'Cache'), h('dd', {}, d.cache)] : null,
    d.error ? [h('dt', {}, 'Error'), h('dd', { class: 'error-text' }, d.error)] : null);

  const response = d.frames && Array.isArray(d.frames) && d.frames.length
    ? [d.assembled ? assembledView(d.assembled) : null, timeline(d.frames), d.frames_truncated ? h('p', { class: 'warn-text' }, 'Frames truncated in the log.') : null]
    : body(d.response?.body, d.response?.body_text, d.response?.body_truncated);
  const parsed = d.parsed !== null && d.parsed !== undefined
    ? section('Parsed output', h('div', { class: 'json' }, jsonTree(d.parsed)))
    : null;

  mount(main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/logs' }, '← Requests')),
    h('div', { class: 'page-head' }, h('h1', {}, 'Request ', h('code', { class: 'id' }, d.id)), h('span', { class: 'spacer' }),
      h('div', { class: 'actions' },
        h('button', { type: 'button', id: 'copy-curl', disabled: !d.curl, onclick: () => copy(d.curl, 'curl command') }, 'Copy as curl'),
        h('button', { type: 'button', id: 'copy-json', onclick: () => copy(JSON.stringify(d, null, 2), 'JSON') }, 'Copy JSON'),
        replayBtn)),
    h('section', { class: 'card' }, facts),
    replaySlot,
    section('Conversation', renderChat(d)),
    h('div', { class: 'two-col' },
      section('Request', h('h3', {}, 'Headers'), headersTable(d.request?.headers), h('h3', {}, 'Body'), body(d.request?.body, d.request?.body_text, d.request?.body_truncated)),
      section(d.stream ? 'Stream' : 'Response', d.response?.headers ? [h('h3', {}, 'Headers'), headersTable(d.response.headers)] : null, h('h3', {}, d.stream ? 'Assembled message' : 'Body'), response)),
    parsed ? h('div', { class: 'two-col' }, parsed, section('Raw answer', d.assembled ? h('div', { class: 'text' }, d.assembled.message?.content || '') : body(d.response?.body, d.response?.body_text))) : null,
    section('Attempts', attemptsTable(d.attempt_list)));
  if (!d.curl) toast('This request cannot be replayed as curl (its body was truncated).', 'warn');
  return null;
}
