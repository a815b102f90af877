// The logs table: filters kept in the URL, cursor paging ("Older"), and
// live updates by polling the newest page.
import { h, mount, clear, fmtMs, fmtTime, fmtNum, statusBadge, outcomeBadge } from './dom.js';
import { api, qs, AuthError } from './api.js';

const FILTERS = ['model', 'backend', 'status', 'outcome', 'stream', 'since', 'until', 'min_latency_ms', 'q', 'key', 'team'];
const POLL_MS = 2500;

/** datetime-local value (local time) ⇄ RFC 3339. */
function toLocalInput(iso) {
  if (!iso) return '';
  const d = new Date(/^\d+$/.test(iso) ? Number(iso) : iso);
  if (isNaN(d)) return '';
  const off = d.getTimezoneOffset() * 60000;
  return new Date(d - off).toISOString().slice(0, 19);
}
function fromLocalInput(v) { return v ? new Date(v).toISOString() : ''; }

function select(id, label, value, options) {
  return [h('label', { for: id }, label), h('select', { id, name: id },
    options.map(([v, text]) => h('option', { value: v, selected: v === value }, text)))];
}

export async function renderLogs(main, params) {
  const f = Object.fromEntries(FILTERS.map((k) => [k, params.get(k) || '']));
  const models = await api('api/models').catch((e) => { if (e instanceof AuthError) throw e; return { data: [] }; });
  const modelNames = models.data.map((m) => m.model_name);
  if (f.model && !modelNames.includes(f.model)) modelNames.push(f.model);

  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter requests' },
    h('div', { class: 'field' }, select('model', 'Model', f.model, [['', 'any'], ...modelNames.map((m) => [m, m])])),
    h('div', { class: 'field' }, h('label', { for: 'backend' }, 'Backend'), h('input', { id: 'backend', name: 'backend', value: f.backend, placeholder: 'name#1', size: 10 })),
    h('div', { class: 'field' }, select('status', 'Status', f.status, [['', 'any'], ['2xx', '2xx'], ['4xx', '4xx'], ['5xx', '5xx'], ...(f.status && !/^[245]xx$/.test(f.status) ? [[f.status, f.status]] : [])])),
    h('div', { class: 'field' }, select('outcome', 'Outcome', f.outcome, [['', 'any'], ['ok', 'ok'], ['failed_over', 'failed over'], ['client_error', 'client error'], ['upstream_error', 'upstream error'], ['all_failed', 'all failed'], ['client_disconnected', 'client disconnected'], ['cancelled', 'cancelled']])),
    h('div', { class: 'field' }, select('stream', 'Stream', f.stream, [['', 'any'], ['true', 'stream'], ['false', 'not stream']])),
    h('div', { class: 'field' }, h('label', { for: 'since' }, 'From'), h('input', { id: 'since', name: 'since', type: 'datetime-local', step: 1, value: toLocalInput(f.since) })),
    h('div', { class: 'field' }, h('label', { for: 'until' }, 'To'), h('input', { id: 'until', name: 'until', type: 'datetime-local', step: 1, value: toLocalInput(f.until) })),
    h('div', { class: 'field' }, h('label', { for: 'min_latency_ms' }, 'Min latency (ms)'), h('input', { id: 'min_latency_ms', name: 'min_latency_ms', type: 'number', min: 0, value: f.min_latency_ms, size: 6 })),
    h('div', { class: 'field' }, h('label', { for: 'key' }, 'Key'), h('input', { id: 'key', name: 'key', value: f.key, placeholder: 'key name', size: 10 })),
    h('div', { class: 'field' }, h('label', { for: 'team' }, 'Team'), h('input', { id: 'team', name: 'team', value: f.team, placeholder: 'team', size: 8 })),
    h('div', { class: 'field grow' }, h('label', { for: 'q' }, 'Search bodies'), h('input', { id: 'q', name: 'q', type: 'search', value: f.q, placeholder: 'text in request or response' })),
    h('div', { class: 'field actions' },
      h('button', { type: 'submit', class: 'primary' }, 'Apply'),
      h('button', { type: 'button', class: 'ghost', onclick: () => { location.hash = '#/logs'; } }, 'Clear')));

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const fd = new FormData(form);
    const next = {};
    for (const k of FILTERS) {
      let v = String(fd.get(k) || '').trim();
      if (k === 'since' || k === 'until') v = fromLocalInput(v);
      next[k] = v;
    }
    location.hash = '#/logs' + qs(next);
  });
  for (const sel of form.querySelectorAll('select')) sel.addEventListener('change', () => form.requestSubmit());

  const live = h('input', { type: 'checkbox', id: 'live', checked: !f.until });
  const status = h('span', { class: 'muted', 'aria-live': 'polite' });
  const tbody = h('tbody');
  const table = h('table', { class: 'logs' },
    h('caption', { class: 'sr-only' }, 'Logged requests, newest first'),
    h('thead', {}, h('tr', {}, ['Time', 'Model', 'Backend', 'Status', 'Outcome', 'Stream', 'Attempts', 'Latency', 'TTFT', 'Tokens in', 'Tokens out', 'Key', 'Team', 'Cost']
      .map((c, i) => h('th', { scope: 'col', class: i >= 6 && i <= 10 || i === 13 ? 'num' : '' }, c)))),
    tbody);
  const more = h('button', { type: 'button', class: 'ghost', hidden: true }, 'Older requests');
  const empty = h('p', { class: 'muted empty', hidden: true }, 'No request matches.');

  mount(main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Requests'),
      h('span', { class: 'spacer' }),
      h('label', { class: 'check', for: 'live' }, live, ' Live'), status),
    form,
    h('div', { class: 'table-wrap' }, table),
    empty, h('div', { class: 'more' }, more));

  const shown = new Set();
  let cursor = null;
  const filterQuery = Object.fromEntries(FILTERS.map((k) => [k, f[k]]));

  function row(r) {
    const href = `#/logs/${encodeURIComponent(r.id)}`;
    const tr = h('tr', { class: r.status >= 500 || r.outcome === 'all_failed' ? 'row-err' : '', dataset: { id: r.id } },
      h('td', {}, h('a', { href, title: r.started_at }, fmtTime(r.started_at))),
      h('td', {}, r.model || '–'),
      h('td', { class: 'muted' }, r.backend || '–'),
      h('td', {}, statusBadge(r.status)),
      h('td', {}, outcomeBadge(r)),
      h('td', {}, r.stream ? h('span', { class: 'badge info' }, 'stream') : h('span', { class: 'muted' }, '–')),
      h('td', { class: 'num' }, r.attempts),
      h('td', { class: 'num' }, fmtMs(r.latency_ms)),
      h('td', { class: 'num' }, fmtMs(r.ttfb_ms)),
      h('td', { class: 'num' }, fmtNum(r.prompt_tokens)),
      h('td', { class: 'num' }, fmtNum(r.completion_tokens)),
      h('td', { class: 'muted' }, r.key_name || '–'),
      h('td', { class: 'muted' }, r.team || '–'),
      h('td', { class: 'num' }, r.cost_usd === null || r.cost_usd === undefined ? '–' : `$${Number(r.cost_usd).toFixed(4)}`));
    tr.addEventListener('click', (ev) => { if (ev.target.tagName !== 'A') location.hash = href; });
    return tr;
  }

  function update() {
    empty.hidden = shown.size > 0;
    more.hidden = !cursor;
    status.textContent = `${shown.size} shown`;
  }

  async function loadOlder() {
    const page = await api('api/logs' + qs({ ...filterQuery, limit: 100, cursor }));
    for (const r of page.data) if (!shown.has(r.id)) { shown.add(r.id); tbody.append(row(r)); }
    cursor = page.next_cursor;
    update();
  }

  async function poll() {
    if (!live.checked || document.hidden) return;
    try {
      const page = await api('api/logs' + qs({ ...filterQuery, limit: 100 }));
      const fresh = page.data.filter((r) => !shown.has(r.id));
      // Newest first: insert above the rows already shown, in order.
      const first = tbody.firstChild;
      for (const r of fresh) {
        shown.add(r.id);
        const tr = row(r);
        tr.classList.add('fresh');
        tbody.insertBefore(tr, first);
      }
      if (shown.size === fresh.length) cursor = page.next_cursor;
      update();
    } catch { /* the next poll tries again */ }
  }

  more.addEventListener('click', () => loadOlder().catch((e) => { status.textContent = e.message; }));
  await loadOlder();
  const timer = setInterval(poll, POLL_MS);
  return () => clearInterval(timer);
}
