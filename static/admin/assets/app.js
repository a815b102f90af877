// The admin UI's shell: hash routes (#/logs, #/logs/ID, #/overview,
// #/models, #/keys, #/spend), the login form when the admin password is needed, log out.
import { h, clear } from './dom.js';
import { api, AuthError } from './api.js';
import { renderLogs } from './logs.js';
import { renderDetail } from './detail.js';
import { renderOverview } from './overview.js';
import { renderModels } from './models.js';
import { renderKeys } from './keys.js';
import { renderSpend } from './spend.js';

const main = document.getElementById('main');
let cleanup = null;

/** The current route: [name, id, URLSearchParams]. */
export function route() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query = ''] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return [parts[0] || 'logs', parts[1], new URLSearchParams(query)];
}

async function render() {
  if (cleanup) { cleanup(); cleanup = null; }
  const [name, id, params] = route();
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  clear(main);
  try {
    if (name === 'logs' && id) cleanup = await renderDetail(main, id);
    else if (name === 'logs') cleanup = await renderLogs(main, params);
    else if (name === 'overview') cleanup = await renderOverview(main, params);
    else if (name === 'models') cleanup = await renderModels(main);
    else if (name === 'keys') cleanup = await renderKeys(main);
    else if (name === 'spend') cleanup = await renderSpend(main, params);
    else main.append(h('p', {}, 'No such page. ', h('a', { href: '#/logs' }, 'Go to the logs')));
    document.title = `yallmp · ${name === 'logs' && id ? 'request ' + id : name}`;
  } catch (e) {
    showError(e);
  }
}

export function showError(e) {
  if (e instanceof AuthError) {
    if (cleanup) { cleanup(); cleanup = null; }
    clear(main);
    if (e.code === 'admin_loopback_only') {
      main.append(h('section', { class: 'card narrow' }, h('h1', {}, 'Admin UI unavailable'), h('p', {}, e.message)));
    } else {
      main.append(loginForm());
    }
    return;
  }
  main.append(h('p', { class: 'error', role: 'alert' }, e.message || String(e)));
}

function loginForm() {
  const input = h('input', { id: 'password', type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const msg = h('p', { class: 'error', role: 'alert', hidden: true });
  const form = h('form', { class: 'card narrow login', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Log in'),
    h('p', { class: 'muted' }, 'This proxy has an admin password.'),
    h('label', { for: 'password' }, 'Admin password'), input, msg,
    h('button', { type: 'submit', class: 'primary' }, 'Log in'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    msg.hidden = true;
    try {
      await api('login', { method: 'POST', body: { password: input.value }, asLogin: true });
      document.getElementById('logout').hidden = false;
      render();
    } catch (e) {
      msg.textContent = e.message;
      msg.hidden = false;
      input.select();
    }
  });
  setTimeout(() => input.focus(), 0);
  return form;
}

document.getElementById('logout').addEventListener('click', async () => {
  await api('logout', { method: 'POST' }).catch(() => {});
  document.getElementById('logout').hidden = true;
  render();
});

// Whether a session cookie is in use (HttpOnly: ask the server).
api('api/models').then((m) => {
  document.getElementById('logout').hidden = !m.admin_password_set;
}).catch(() => {});

window.addEventListener('hashchange', render);
render();
