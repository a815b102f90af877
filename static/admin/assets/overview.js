// The overview: requests per bucket, error rate and p50/p95 latency over
// the selected range, overall and per model, as inline SVG charts.
import { h, mount, s, fmtMs, fmtNum } from './dom.js';
import { api, qs } from './api.js';

const RANGES = [['1h', 'Last hour', 3600e3], ['6h', 'Last 6 hours', 6 * 3600e3], ['24h', 'Last 24 hours', 86400e3], ['7d', 'Last 7 days', 7 * 86400e3]];
const W = 560, H = 190, PAD = { l: 56, r: 10, t: 12, b: 26 };

function fmtTick(iso, bucket) {
  const d = new Date(iso);
  const p = (n) => String(n).padStart(2, '0');
  return bucket >= 86400 ? `${d.getMonth() + 1}/${d.getDate()}` : `${p(d.getHours())}:${p(d.getMinutes())}`;
}

/**
 * A chart of one or more series over the same points: kind 'bar' or 'line'.
 * series: [{label, cls, values:[number|null]}]
 */
export function chart(title, points, series, { kind = 'line', fmt = String, bucket = 60 } = {}) {
  const n = points.length;
  const all = series.flatMap((x) => x.values).filter((v) => v !== null && v !== undefined);
  const max = Math.max(1e-9, ...all) * 1.1;
  const x = (i) => PAD.l + (n <= 1 ? 0 : (i * (W - PAD.l - PAD.r)) / (n - 1));
  const y = (v) => H - PAD.b - (v / max) * (H - PAD.t - PAD.b);
  const g = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': `${title}: ${series.map((x) => x.label).join(', ')}` });
  for (const f of [0, 0.5, 1]) {
    const v = (max / 1.1) * f;
    g.append(s('line', { x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v), class: 'grid' }),
      s('text', { x: PAD.l - 6, y: y(v) + 4, class: 'tick', 'text-anchor': 'end' }, fmt(v)));
  }
  const every = Math.max(1, Math.ceil(n / 6));
  points.forEach((p, i) => {
    if (i % every === 0) g.append(s('text', { x: x(i), y: H - 6, class: 'tick', 'text-anchor': 'middle' }, fmtTick(p.t, bucket)));
  });
  for (const ser of series) {
    if (kind === 'bar') {
      const bw = Math.max(1, ((W - PAD.l - PAD.r) / Math.max(1, n)) * 0.7);
      ser.values.forEach((v, i) => {
        if (!v) return;
        const r = s('rect', { x: x(i) - bw / 2, y: y(v), width: bw, height: H - PAD.b - y(v), class: `bar ${ser.cls}` });
        r.append(s('title', {}, `${fmtTick(points[i].t, bucket)}: ${fmt(v)}`));
        g.append(r);
      });
    } else {
      let d = '';
      let pen = false;
      ser.values.forEach((v, i) => {
        if (v === null || v === undefined) { pen = false; return; }
        d += `${pen ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
        pen = true;
      });
      if (d) g.append(s('path', { d, class: `line ${ser.cls}` }));
      ser.values.forEach((v, i) => {
        if (v === null || v === undefined) return;
        const c = s('circle', { cx: x(i), cy: y(v), r: 2.2, class: `dot ${ser.cls}` });
        c.append(s('title', {}, `${ser.label} ${fmtTick(points[i].t, bucket)}: ${fmt(v)}`));
        g.append(c);
      });
    }
  }
  return h('figure', { class: 'chart-box' }, h('figcaption', {}, title,
    series.length > 1 ? h('span', { class: 'legend' }, series.map((x) => h('span', { class: `key ${x.cls}` }, x.label))) : null), g);
}

function charts(data, title) {
  const pts = data;
  const b = charts.bucket;
  return [
    chart(`${title}Requests per ${b >= 3600 ? b / 3600 + ' h' : b / 60 + ' min'}`, pts, [{ label: 'requests', cls: 's1', values: pts.map((p) => p.count) }], { kind: 'bar', fmt: (v) => fmtNum(Math.round(v)), bucket: b }),
    chart(`${title}Error rate`, pts, [{ label: 'errors', cls: 's3', values: pts.map((p) => (p.count ? p.error_rate * 100 : null)) }], { fmt: (v) => v.toFixed(v < 10 ? 1 : 0) + '%', bucket: b }),
    chart(`${title}Latency`, pts, [
      { label: 'p50', cls: 's1', values: pts.map((p) => p.p50_ms) },
      { label: 'p95', cls: 's2', values: pts.map((p) => p.p95_ms) }], { fmt: fmtMs, bucket: b }),
  ];
}

export async function renderOverview(main, params) {
  const range = RANGES.find((r) => r[0] === params.get('range')) || RANGES[0];
  const model = params.get('model') || '';
  const since = new Date(Date.now() - range[2]).toISOString();
  const st = await api('api/stats' + qs({ since, model }));
  charts.bucket = st.bucket_seconds;
  const models = Object.keys(st.models);
  const sel = h('select', { id: 'range' }, RANGES.map(([k, label]) => h('option', { value: k, selected: k === range[0] }, label)));
  sel.addEventListener('change', () => { location.hash = '#/overview' + qs({ range: sel.value, model }); });
  const t = st.totals;
  mount(main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Overview'), h('span', { class: 'spacer' }),
      h('label', { for: 'range' }, 'Range '), sel),
    model ? h('p', {}, 'Model ', h('strong', {}, model), ' · ', h('a', { href: '#/overview' + qs({ range: range[0] }) }, 'all models')) : null,
    h('section', { class: 'stats-row', 'aria-label': 'Totals' },
      stat('Requests', fmtNum(t.count)), stat('Errors', `${fmtNum(t.errors)} (${(t.error_rate * 100).toFixed(1)}%)`),
      stat('p50 latency', fmtMs(t.p50_ms)), stat('p95 latency', fmtMs(t.p95_ms))),
    st.partial ? h('p', { class: 'warn-text' }, 'Only the newest 200,000 requests of this range are counted.') : null,
    h('div', { class: 'charts' }, charts(st.series, '')),
    models.length && !model ? [h('h2', {}, 'Per model'), h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Model', 'Requests', 'Errors', 'p50', 'p95', ''].map((c, i) => h('th', { scope: 'col', class: i > 0 && i < 5 ? 'num' : '' }, c)))),
      h('tbody', {}, models.map((m) => {
        const mt = st.model_totals[m];
        return h('tr', {}, h('td', {}, m), h('td', { class: 'num' }, fmtNum(mt.count)), h('td', { class: 'num' }, `${fmtNum(mt.errors)} (${(mt.error_rate * 100).toFixed(1)}%)`),
          h('td', { class: 'num' }, fmtMs(mt.p50_ms)), h('td', { class: 'num' }, fmtMs(mt.p95_ms)),
          h('td', {}, h('a', { href: '#/overview' + qs({ range: range[0], model: m }) }, 'charts'), ' · ', h('a', { href: '#/logs' + qs({ model: m }) }, 'requests')));
      }))))] : null);
  return null;
}

function stat(label, value) {
  return h('div', { class: 'stat card' }, h('div', { class: 'stat-label' }, label), h('div', { class: 'stat-value' }, value));
}
