// Models: every model with its source, protection and backends' health;
// register, edit, copy and delete through the admin API (protected ones
// ask for the admin password); reload the config and show what changed.
import { h, mount, clear, toast } from './dom.js';
import { api, ApiError } from './api.js';

const HEALTH = { healthy: 'ok', cooling_down: 'warn', unhealthy: 'err' };

/** Runs a change; a protected model asks for the password and retries. */
async function change(path, opts) {
  try {
    return await api(path, opts);
  } catch (e) {
    if (e instanceof ApiError && e.data?.error?.code === 'model_protected') {
      const pw = await askPassword(e.message);
      if (pw === null) throw new Error('Cancelled.');
      return api(path, { ...opts, headers: { authorization: `Bearer ${pw}` } });
    }
    throw e;
  }
}

function askPassword(message) {
  return new Promise((resolve) => {
    const input = h('input', { type: 'password', id: 'protected-password', autocomplete: 'current-password', required: true });
    const dlg = h('dialog', { class: 'card', 'aria-labelledby': 'pw-title' },
      h('form', { method: 'dialog' },
        h('h2', { id: 'pw-title' }, 'Protected model'),
        h('p', {}, message),
        h('label', { for: 'protected-password' }, 'Admin password'), input,
        h('div', { class: 'actions' },
          h('button', { value: 'cancel', formnovalidate: true, class: 'ghost' }, 'Cancel'),
          h('button', { value: 'ok', class: 'primary' }, 'Continue'))));
    document.body.append(dlg);
    dlg.addEventListener('close', () => { resolve(dlg.returnValue === 'ok' ? input.value : null); dlg.remove(); });
    dlg.showModal();
  });
}

const FIELDS = [
  ['model_name', 'Name', 'text', 'my-model'],
  ['api_base', 'API base', 'url', 'https://api.example.com/v1'],
  ['model', 'Model (provider/name)', 'text', 'openai/gpt-4o'],
  ['target_model', 'Upstream model', 'text', 'gpt-4o'],
  ['api_type', 'API type', 'text', 'openai'],
  ['api_key', 'API key', 'password', 'not shown; enter it to set one'],
  ['extends', 'Extends', 'text', 'base model'],
  ['request_timeout', 'Request timeout (s)', 'number', '600'],
];

function modelForm(initial, onDone, { title, editing }) {
  const inputs = {};
  const err = h('div', { class: 'error', role: 'alert', hidden: true });
  const form = h('form', { class: 'card model-form', 'aria-labelledby': 'form-title' },
    h('h2', { id: 'form-title' }, title),
    editing ? h('p', { class: 'warn-text' }, 'Saving replaces the model with these fields: its key (never shown) must be entered again, and parameters, parsers and fallbacks set elsewhere are not kept. Use Copy to keep a model whole.') : null,
    h('div', { class: 'grid-form' }, FIELDS.map(([k, label, type, ph]) => {
      const id = `f-${k}`;
      inputs[k] = h('input', { id, name: k, type, placeholder: ph, value: initial[k] ?? '', readonly: editing && k === 'model_name', step: type === 'number' ? 'any' : undefined, autocomplete: 'off' });
      return h('div', { class: 'field' }, h('label', { for: id }, label), inputs[k]);
    }),
    h('div', { class: 'field check' }, inputs.protected = h('input', { id: 'f-protected', type: 'checkbox', checked: !!initial.protected }), h('label', { for: 'f-protected' }, 'Protected (changes need the admin password)'))),
    err,
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'ghost', onclick: () => onDone(false) }, 'Cancel'),
      h('button', { type: 'submit', class: 'primary' }, editing ? 'Save' : 'Register')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = {};
    for (const [k, , type] of FIELDS) {
      const v = inputs[k].value.trim();
      if (v) body[k] = type === 'number' ? Number(v) : v;
    }
    if (inputs.protected.checked) body.protected = true;
    try {
      await change('models', { method: 'POST', body });
      toast(`Model ${body.model_name} saved`);
      onDone(true);
    } catch (e) {
      err.textContent = e.message + (e.data?.error?.errors ? ': ' + e.data.error.errors.join('; ') : '');
      err.hidden = false;
    }
  });
  setTimeout(() => inputs[editing ? 'api_base' : 'model_name'].focus(), 0);
  return form;
}

/** The form's fields from a model as the API shows it (first backend). */
function initialOf(m) {
  const b = m.backends[0] || {};
  return { model_name: m.model_name, api_base: b.api_base, target_model: b.target_model, api_type: b.api_type, request_timeout: b.request_timeout, protected: m.protected };
}

export async function renderModels(main) {
  const slot = h('div');
  const reloadOut = h('div', { 'aria-live': 'polite' });
  const list = h('div');

  async function refresh() {
    const models = await api('api/models');
    clear(list).append(h('div', { class: 'table-wrap' }, h('table', { class: 'models' },
      h('caption', { class: 'sr-only' }, 'Models'),
      h('thead', {}, h('tr', {}, ['Model', 'Source', 'Backends', 'Fallbacks', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, models.data.map((m) => h('tr', { dataset: { model: m.model_name } },
        h('td', {}, h('strong', {}, m.model_name), m.protected ? h('span', { class: 'badge warn', title: 'Protected: changes need the admin password' }, 'protected') : null),
        h('td', {}, h('span', { class: 'badge neutral' }, m.source)),
        h('td', {}, h('ul', { class: 'backends' }, m.backends.map((b) => h('li', {},
          h('span', { class: `badge ${HEALTH[b.health?.state] || 'neutral'}`, title: b.health?.last_error || '' }, (b.health?.state || 'unknown').replace('_', ' ')), ' ',
          h('code', {}, b.name), ' ', h('span', { class: 'muted break' }, `${b.api_type} · ${b.api_base}${b.target_model ? ' · ' + b.target_model : ''}`),
          b.api_key ? h('span', { class: 'muted' }, ' · key ***') : null)))),
        h('td', {}, (m.fallbacks || []).join(', ') || h('span', { class: 'muted' }, '–')),
        h('td', { class: 'row-actions' },
          h('button', { type: 'button', 'aria-label': `Edit ${m.model_name}`, onclick: () => edit(m) }, 'Edit'),
          h('button', { type: 'button', 'aria-label': `Copy ${m.model_name}`, onclick: () => copyModel(m) }, 'Copy'),
          h('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${m.model_name}`, onclick: () => del(m) }, 'Delete'))))))));
  }

  const done = (changed) => { clear(slot); if (changed) refresh(); };
  function edit(m) { clear(slot).append(modelForm(initialOf(m), done, { title: `Edit ${m.model_name}`, editing: true })); }
  function register() { clear(slot).append(modelForm({}, done, { title: 'Register a model', editing: false })); }
  async function copyModel(m) {
    const name = prompt(`Copy ${m.model_name} as:`, `${m.model_name}-copy`);
    if (!name) return;
    try {
      await change(`models/${encodeURIComponent(m.model_name)}/copy`, { method: 'POST', body: { new_name: name } });
      toast(`Copied to ${name}`);
      refresh();
    } catch (e) { toast(e.message, 'err'); }
  }
  async function del(m) {
    if (!confirm(`Delete model ${m.model_name}?`)) return;
    try {
      await change(`models/${encodeURIComponent(m.model_name)}`, { method: 'DELETE' });
      toast(`Deleted ${m.model_name}`);
      refresh();
    } catch (e) { toast(e.message, 'err'); }
  }
  async function reload() {
    clear(reloadOut).append(h('p', { class: 'muted' }, 'Reloading…'));
    try {
      const r = await api('config/reload', { method: 'POST' });
      const c = r.changes;
      const line = (label, names) => h('li', {}, h('strong', {}, label + ': '), names.length ? names.join(', ') : h('span', { class: 'muted' }, 'none'));
      clear(reloadOut).append(h('section', { class: 'card ok-box', id: 'reload-result' }, h('h2', {}, 'Config reloaded'),
        h('ul', {}, line('Added', c.added), line('Removed', c.removed), line('Changed', c.changed)),
        (r.warnings || []).length ? [h('h3', {}, 'Warnings'), h('ul', {}, r.warnings.map((w) => h('li', {}, w)))] : null));
      refresh();
    } catch (e) {
      const errors = e.data?.error?.errors || [];
      clear(reloadOut).append(h('section', { class: 'card err-box', id: 'reload-result', role: 'alert' }, h('h2', {}, 'Reload failed: nothing changed'),
        h('p', {}, e.message), errors.length ? h('ul', {}, errors.map((x) => h('li', {}, h('code', {}, x)))) : null));
    }
  }

  mount(main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Models'), h('span', { class: 'spacer' }),
      h('div', { class: 'actions' },
        h('button', { type: 'button', id: 'register', class: 'primary', onclick: register }, 'Register model'),
        h('button', { type: 'button', id: 'reload', onclick: reload }, 'Reload config'))),
    reloadOut, slot, list);
  await refresh();
  return null;
}
