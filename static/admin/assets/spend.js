// Spend: cost per day as a chart, and requests, tokens and cost by key,
// team and model, over a time range (from the request log's database).
import { h, mount, fmtNum } from './dom.js';
import { api, qs } from './api.js';
import { chart } from './overview.js';

const RANGES = [['24h', 'Last 24 hours', 86400e3], ['7d', 'Last 7 days', 7 * 86400e3], ['30d', 'Last 30 days', 30 * 86400e3], ['90d', 'Last 90 days', 90 * 86400e3]];
const usd = (v) => (v === null || v === undefined ? '–' : `$${Number(v).toFixed(v < 1 ? 4 : 2)}`);

function table(id, title, rows) {
  return h('section', { class: 'card', 'aria-label': title },
    h('h2', {}, title),
    h('div', { class: 'table-wrap' }, h('table', { id },
      h('thead', {}, h('tr', {}, ['', 'Requests', 'Input tokens', 'Output tokens', 'Cost'].map((c, i) => h('th', { scope: 'col', class: i ? 'num' : '' }, c)))),
      h('tbody', {}, rows.length ? rows.map((r) => h('tr', {},
        h('td', {}, r.group ?? h('span', { class: 'muted' }, '(none)')),
        h('td', { class: 'num' }, fmtNum(r.requests)),
        h('td', { class: 'num' }, fmtNum(r.prompt_tokens)),
        h('td', { class: 'num' }, fmtNum(r.completion_tokens)),
        h('td', { class: 'num' }, usd(r.cost_usd)))) :
        h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'Nothing in this range.'))))));
}

export async function renderSpend(main, params) {
  const range = RANGES.find((r) => r[0] === params.get('range')) || RANGES[1];
  const since = new Date(Date.now() - range[2]).toISOString();
  const get = (group_by) => api('api/spend' + qs({ group_by, since }));
  const [days, keys, teams, models] = await Promise.all([get('day'), get('key'), get('team'), get('model')]);
  const sel = h('select', { id: 'spend-range' }, RANGES.map(([k, label]) => h('option', { value: k, selected: k === range[0] }, label)));
  sel.addEventListener('change', () => { location.hash = '#/spend' + qs({ range: sel.value }); });
  const total = models.data.reduce((a, r) => a + (r.cost_usd || 0), 0);
  const points = days.data.map((r) => ({ t: r.group }));
  mount(main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Spend'), h('span', { class: 'spacer' }),
      h('label', { for: 'spend-range' }, 'Range '), sel),
    h('section', { class: 'stats-row', 'aria-label': 'Totals' },
      h('div', { class: 'stat card' }, h('div', { class: 'stat-label' }, 'Cost'), h('div', { class: 'stat-value', id: 'spend-total' }, usd(total))),
      h('div', { class: 'stat card' }, h('div', { class: 'stat-label' }, 'Requests'), h('div', { class: 'stat-value' }, fmtNum(models.data.reduce((a, r) => a + r.requests, 0))))),
    points.length ? h('div', { class: 'charts' }, chart('Cost per day (USD)', points,
      [{ label: 'cost', cls: 's1', values: days.data.map((r) => r.cost_usd || 0) }], { kind: 'bar', fmt: (v) => usd(v), bucket: 86400 })) : null,
    table('spend-by-key', 'By key', keys.data),
    table('spend-by-team', 'By team', teams.data),
    table('spend-by-model', 'By model', models.data));
  return null;
}
