// Keys: virtual keys and teams. Create (the secret is shown once, with a
// copy button), edit limits, revoke, rotate; spend against budget as a bar.
import { h, mount, clear, toast, copy, fmtTime } from './dom.js';
import { api } from './api.js';

const usd = (v) => (v === null || v === undefined ? '–' : `$${Number(v).toFixed(v < 1 ? 4 : 2)}`);

/** Spend against budget: a bar, and the numbers. */
function budgetBar(spend, max, period) {
  if (max === null || max === undefined) return h('span', { class: 'muted' }, `${usd(spend)} · no budget`);
  // A native meter: styled by the browser, no inline style (the CSP has none).
  return h('div', { class: 'budget' },
    h('meter', { min: '0', max: String(max || 1e-9), low: String(max * 0.8), high: String(max * 0.999), optimum: '0',
      value: String(Math.min(spend, max)), 'aria-label': `spent ${usd(spend)} of ${usd(max)}` }),
    h('span', { class: 'muted' }, `${usd(spend)} of ${usd(max)}${period ? ' per ' + period : ''}`));
}

function status(k) {
  if (k.revoked_at) return h('span', { class: 'badge err' }, 'revoked');
  if (k.expires_at && new Date(k.expires_at) <= new Date()) return h('span', { class: 'badge warn' }, 'expired');
  return h('span', { class: 'badge ok' }, 'active');
}

/** The secret of a new or rotated key: shown once. */
function secretBox(slot, name, secret) {
  clear(slot).append(h('section', { class: 'card ok-box', id: 'new-secret', role: 'status' },
    h('h2', {}, `Key for ${name}`),
    h('p', {}, 'Copy it now: it is shown only this once.'),
    h('div', { class: 'secret-row' }, h('code', { id: 'secret-value' }, secret),
      h('button', { type: 'button', id: 'copy-secret', onclick: () => copy(secret, 'Key') }, 'Copy')),
    h('button', { type: 'button', class: 'ghost', onclick: () => clear(slot) }, 'Done')));
}

const LIMIT_FIELDS = [
  ['models', 'Models (comma-separated, * allowed; empty = all)', 'text'],
  ['max_budget', 'Budget (USD)', 'number'],
  ['budget_duration', 'Budget period (1d, 7d, 30d, 1mo; empty = lifetime)', 'text'],
  ['rpm_limit', 'Requests per minute', 'number'],
  ['tpm_limit', 'Tokens per minute', 'number'],
];

/** A create/edit form for a key (`teams` given) or a team. */
function limitsForm({ title, initial = {}, teams = null, onSubmit, onCancel }) {
  const inputs = {};
  const field = (k, label, type, extra = {}) => {
    const id = `k-${k}`;
    const v = initial[k];
    inputs[k] = h('input', { id, name: k, type, value: Array.isArray(v) ? v.join(', ') : v ?? '', step: type === 'number' ? 'any' : undefined, autocomplete: 'off', ...extra });
    return h('div', { class: 'field' }, h('label', { for: id }, label), inputs[k]);
  };
  const err = h('div', { class: 'error', role: 'alert', hidden: true });
  let teamSel = null;
  if (teams) {
    teamSel = h('select', { id: 'k-team', name: 'team' }, h('option', { value: '' }, '(none)'),
      teams.map((t) => h('option', { value: t.id, selected: t.id === initial.team_id }, t.name)));
  }
  const form = h('form', { class: 'card model-form', 'aria-label': title },
    h('h2', {}, title),
    h('div', { class: 'grid-form' },
      field('name', 'Name', 'text', { required: true }),
      teamSel ? h('div', { class: 'field' }, h('label', { for: 'k-team' }, 'Team'), teamSel) : null,
      LIMIT_FIELDS.map(([k, label, type]) => field(k, label, type)),
      teams ? field('expires_at', 'Expires (UTC, e.g. 2027-01-31T00:00:00Z)', 'text', { value: initial.expires_at || '' }) : null),
    err,
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary' }, 'Save'),
      h('button', { type: 'button', class: 'ghost', onclick: onCancel }, 'Cancel')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.hidden = true;
    const num = (k) => (inputs[k].value.trim() === '' ? null : Number(inputs[k].value));
    const body = {
      name: inputs.name.value.trim(),
      models: inputs.models.value.split(',').map((m) => m.trim()).filter(Boolean),
      max_budget: num('max_budget'),
      budget_duration: inputs.budget_duration.value.trim() || null,
      rpm_limit: num('rpm_limit'),
      tpm_limit: num('tpm_limit'),
    };
    if (teamSel) body.team = teamSel.value || null;
    if (inputs.expires_at) body.expires_at = inputs.expires_at.value.trim() || null;
    try {
      await onSubmit(body);
    } catch (e) {
      err.textContent = e.message;
      err.hidden = false;
    }
  });
  return form;
}

export async function renderKeys(main) {
  const slot = h('div');
  const keysBox = h('div');
  const teamsBox = h('div');
  let teams = [];

  async function refresh() {
    const [k, t] = await Promise.all([api('keys'), api('teams')]);
    teams = t.data;
    clear(keysBox).append(h('div', { class: 'table-wrap' }, h('table', { class: 'keys', id: 'keys-table' },
      h('caption', { class: 'sr-only' }, 'Virtual keys'),
      h('thead', {}, h('tr', {}, ['Name', 'Key', 'Team', 'Models', 'Spend', 'Limits', 'Status', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, k.data.length ? k.data.map((key) => h('tr', { dataset: { key: key.id } },
        h('td', {}, h('strong', {}, key.name), key.source === 'config' ? h('span', { class: 'badge neutral', title: 'Declared in the config file' }, 'config') : null),
        h('td', {}, h('code', {}, key.hint)),
        h('td', {}, key.team || h('span', { class: 'muted' }, '–')),
        h('td', {}, key.models.length ? key.models.join(', ') : h('span', { class: 'muted' }, 'all')),
        h('td', {}, budgetBar(key.spend, key.max_budget, key.budget_duration)),
        h('td', { class: 'muted' }, [key.rpm_limit ? `${key.rpm_limit} rpm` : null, key.tpm_limit ? `${key.tpm_limit} tpm` : null].filter(Boolean).join(' · ') || '–',
          key.expires_at ? h('div', {}, `expires ${fmtTime(key.expires_at, true)}`) : null),
        h('td', {}, status(key)),
        h('td', { class: 'row-actions' }, key.source === 'config' || key.revoked_at ? null : [
          h('button', { type: 'button', 'aria-label': `Edit ${key.name}`, onclick: () => editKey(key) }, 'Edit'),
          h('button', { type: 'button', 'aria-label': `Rotate ${key.name}`, onclick: () => rotate(key) }, 'Rotate'),
          h('button', { type: 'button', class: 'danger', 'aria-label': `Revoke ${key.name}`, onclick: () => revoke(key) }, 'Revoke')]))) :
        h('tr', {}, h('td', { colspan: 8, class: 'muted' }, 'No keys yet.'))))));
    clear(teamsBox).append(h('div', { class: 'table-wrap' }, h('table', { class: 'keys', id: 'teams-table' },
      h('caption', { class: 'sr-only' }, 'Teams'),
      h('thead', {}, h('tr', {}, ['Team', 'Models', 'Spend', 'Limits', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, teams.length ? teams.map((t) => h('tr', { dataset: { team: t.id } },
        h('td', {}, h('strong', {}, t.name), t.source === 'config' ? h('span', { class: 'badge neutral' }, 'config') : null),
        h('td', {}, t.models.length ? t.models.join(', ') : h('span', { class: 'muted' }, 'all')),
        h('td', {}, budgetBar(t.spend, t.max_budget, t.budget_duration)),
        h('td', { class: 'muted' }, [t.rpm_limit ? `${t.rpm_limit} rpm` : null, t.tpm_limit ? `${t.tpm_limit} tpm` : null].filter(Boolean).join(' · ') || '–'),
        h('td', { class: 'row-actions' }, t.source === 'config' ? null : [
          h('button', { type: 'button', 'aria-label': `Edit team ${t.name}`, onclick: () => editTeam(t) }, 'Edit'),
          h('button', { type: 'button', class: 'danger', 'aria-label': `Delete team ${t.name}`, onclick: () => delTeam(t) }, 'Delete')]))) :
        h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No teams yet.'))))));
  }

  const cancel = () => clear(slot);
  function newKey() {
    clear(slot).append(limitsForm({ title: 'New key', teams, onCancel: cancel, onSubmit: async (body) => {
      const made = await api('keys', { method: 'POST', body });
      secretBox(slot, made.name, made.key);
      refresh();
    } }));
  }
  function editKey(key) {
    clear(slot).append(limitsForm({ title: `Edit ${key.name}`, initial: key, teams, onCancel: cancel, onSubmit: async (body) => {
      await api(`keys/${encodeURIComponent(key.id)}`, { method: 'PATCH', body });
      toast(`Saved ${body.name}`);
      clear(slot);
      refresh();
    } }));
  }
  async function rotate(key) {
    if (!confirm(`Rotate ${key.name}? Its current secret stops working at once.`)) return;
    try {
      const r = await api(`keys/${encodeURIComponent(key.id)}/rotate`, { method: 'POST' });
      secretBox(slot, r.name, r.key);
      refresh();
    } catch (e) { toast(e.message, 'err'); }
  }
  async function revoke(key) {
    if (!confirm(`Revoke ${key.name}? Requests with it are refused at once.`)) return;
    try {
      await api(`keys/${encodeURIComponent(key.id)}`, { method: 'DELETE' });
      toast(`Revoked ${key.name}`);
      refresh();
    } catch (e) { toast(e.message, 'err'); }
  }
  function newTeam() {
    clear(slot).append(limitsForm({ title: 'New team', onCancel: cancel, onSubmit: async (body) => {
      await api('teams', { method: 'POST', body });
      toast(`Created team ${body.name}`);
      clear(slot);
      refresh();
    } }));
  }
  function editTeam(t) {
    clear(slot).append(limitsForm({ title: `Edit team ${t.name}`, initial: t, onCancel: cancel, onSubmit: async (body) => {
      await api(`teams/${encodeURIComponent(t.id)}`, { method: 'PATCH', body });
      toast(`Saved team ${body.name}`);
      clear(slot);
      refresh();
    } }));
  }
  async function delTeam(t) {
    if (!confirm(`Delete team ${t.name}? Its keys stay, without a team.`)) return;
    try {
      await api(`teams/${encodeURIComponent(t.id)}`, { method: 'DELETE' });
      toast(`Deleted team ${t.name}`);
      refresh();
    } catch (e) { toast(e.message, 'err'); }
  }

  mount(main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Keys'), h('span', { class: 'spacer' }),
      h('div', { class: 'actions' },
        h('button', { type: 'button', id: 'new-key', class: 'primary', onclick: newKey }, 'New key'),
        h('button', { type: 'button', id: 'new-team', onclick: newTeam }, 'New team'))),
    slot, keysBox, h('h2', {}, 'Teams'), teamsBox);
  await refresh();
  return null;
}
