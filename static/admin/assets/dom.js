// Small DOM helpers. Everything from the log is untrusted: it goes into
// the page as text nodes, never as HTML.

/** Creates an element: h('a', {href: '#', class: 'x', onclick: fn}, 'text', child). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

/** Appends children to an element (nested arrays flattened; null, undefined and false skipped). */
export function mount(el, ...children) { append(el, children); return el; }

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** An SVG element with attributes. */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  append(el, children);
  return el;
}

export function clear(el) { while (el.firstChild) el.firstChild.remove(); return el; }

export function fmtMs(v) {
  if (v === null || v === undefined) return '–';
  if (v >= 10000) return (v / 1000).toFixed(1) + ' s';
  if (v >= 1000) return (v / 1000).toFixed(2) + ' s';
  if (v >= 100) return Math.round(v) + ' ms';
  return v.toFixed(1) + ' ms';
}

export function fmtTime(iso, withDate = false) {
  if (!iso) return '–';
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  const t = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  const today = new Date().toDateString() === d.toDateString();
  return withDate || !today ? `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${t}` : t;
}

export function fmtNum(v) { return v === null || v === undefined ? '–' : Number(v).toLocaleString('en-US'); }

/** A status badge: 2xx ok, 4xx warn, 5xx error. */
export function statusBadge(status) {
  const cls = !status ? 'neutral' : status < 400 ? 'ok' : status < 500 ? 'warn' : 'err';
  return h('span', { class: `badge ${cls}` }, status ?? '–');
}

const OUTCOME_CLASS = { ok: 'ok', client_error: 'warn', upstream_error: 'err', all_failed: 'err', client_disconnected: 'neutral', cancelled: 'neutral' };

export function outcomeBadge(row) {
  const label = row.failed_over ? 'failed over' : String(row.outcome || '').replace(/_/g, ' ');
  return h('span', { class: `badge ${row.failed_over ? 'info' : OUTCOME_CLASS[row.outcome] || 'neutral'}` }, label);
}

/** A collapsible JSON tree (objects and arrays fold; the first levels open). */
export function jsonTree(value, depth = 0, key = null) {
  const label = key === null ? [] : [h('span', { class: 'j-key' }, JSON.stringify(key)), ': '];
  if (value !== null && typeof value === 'object') {
    const isArr = Array.isArray(value);
    const entries = isArr ? value.map((v, i) => [i, v]) : Object.entries(value);
    if (entries.length === 0) return h('div', { class: 'j-line' }, label, isArr ? '[]' : '{}');
    const summary = h('summary', {}, label, h('span', { class: 'j-meta' }, isArr ? `[${entries.length}]` : `{${entries.length}}`));
    return h('details', { class: 'j-node', open: depth < 3 }, summary,
      h('div', { class: 'j-children' }, entries.map(([k, v]) => jsonTree(v, depth + 1, isArr ? null : k))));
  }
  const cls = value === null ? 'j-null' : typeof value === 'string' ? 'j-str' : typeof value === 'number' ? 'j-num' : 'j-bool';
  return h('div', { class: 'j-line' }, label, h('span', { class: cls }, JSON.stringify(value)));
}

let toastTimer = null;
export function toast(msg, kind = 'info') {
  const t = document.getElementById('toast');
  t.textContent = msg;
  t.className = `show ${kind}`;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.className = ''; }, 3500);
}

export async function copy(text, what) {
  try {
    await navigator.clipboard.writeText(text);
    toast(`${what} copied`);
  } catch {
    // Clipboard blocked (no permission, insecure origin): select it instead.
    const ta = h('textarea', { class: 'copy-fallback', 'aria-label': what, readonly: true });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    const ok = document.execCommand && document.execCommand('copy');
    ta.remove();
    toast(ok ? `${what} copied` : `Could not copy ${what}`, ok ? 'info' : 'err');
  }
}
