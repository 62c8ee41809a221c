// Router and sign-in. Each page is `render(view, params, ctx)`; ctx.signal aborts its
// requests and event streams when the user navigates away.

import { checkToken, get, setToken, signOut, token } from './api.js';
import { h, fill, errorBox } from './dom.js';
import { overviewPage, jobsPage, nodesPage, runsPage } from './pages.js';
import { jobPage } from './job.js';
import { runPage } from './run.js';
import { sharePage } from './share.js';

const routes = [
  [/^\/$/, overviewPage, 'overview'],
  [/^\/jobs$/, jobsPage, 'jobs'],
  [/^\/jobs\/(\d+)$/, jobPage, 'jobs'],
  [/^\/runs$/, runsPage, 'runs'],
  [/^\/runs\/(\d+)$/, runPage, 'runs'],
  [/^\/nodes$/, nodesPage, 'nodes'],
  [/^\/share$/, sharePage, 'share'],
];

let current = null;

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, qs] = raw.split('?');
  return { path, query: new URLSearchParams(qs || '') };
}

function setLive(state) {
  const el = document.getElementById('live');
  el.textContent = state;
  el.className = `live ${state}`;
}

function loginPage(view, message) {
  document.body.classList.add('signed-out');
  const input = h('input', {
    id: 'token', type: 'password', autocomplete: 'current-password', required: true,
    placeholder: 'API token', 'aria-label': 'API token',
  });
  const remember = h('input', { id: 'remember', type: 'checkbox' });
  const status = h('div', { class: 'login-status', role: 'status' }, message || '');
  const form = h('form', { class: 'login', id: 'login-form' },
    h('h1', {}, 'Sign in to Zenith'),
    h('p', { class: 'muted' },
      'Paste an API token: the admin token in admin.token in the server\'s data directory ',
      '(for zenith up: ~/.local/share/zenith/admin.token), or one an admin made for you with ',
      'zenith token create (a viewer token reads without changing anything).'),
    input,
    h('label', { class: 'check' }, remember, ' Remember on this browser'),
    h('button', { type: 'submit' }, 'Sign in'),
    status);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const t = input.value.trim();
    try {
      if (await checkToken(t)) {
        setToken(t, remember.checked);
        route();
      } else {
        fill(status, errorBox(new Error('That token was refused.')));
      }
    } catch (e) {
      fill(status, errorBox(e));
    }
  });
  fill(view, form);
  input.focus();
}

function route() {
  if (current) current.abort();
  current = new AbortController();
  const view = document.getElementById('view');
  delete view.dataset.ready;
  if (!token()) {
    setLive('offline');
    loginPage(view);
    return;
  }
  document.body.classList.remove('signed-out');
  showWho();
  const { path, query } = parseHash();
  const hit = routes.find(([re]) => re.test(path));
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', !!hit && a.dataset.nav === hit[2]);
  }
  if (!hit) {
    fill(view, h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/' }, 'Back to the overview')));
    return;
  }
  const params = path.match(hit[0]).slice(1);
  const ctx = { signal: current.signal, query, setLive };
  fill(view, h('p', { class: 'muted' }, 'Loading…'));
  Promise.resolve(hit[1](view, params, ctx)).catch((e) => {
    if (e.name !== 'AbortError' && !ctx.signal.aborted) fill(view, errorBox(e));
  });
}

// Who the token acts as, beside the sign-out button (asked once per sign-in).
let whoFor = null;
function showWho() {
  const el = document.getElementById('whoami');
  if (whoFor === token()) return;
  whoFor = token();
  get('/whoami').then((w) => {
    el.textContent = `${w.user} (${w.role})`;
    el.title = `namespaces: ${w.namespaces.join(', ')}; default ${w.default_namespace}`;
  }).catch(() => { el.textContent = ''; whoFor = null; });
}

// `zenith up` prints a link carrying the token in the fragment (never sent to the server):
// take it, then drop it from the address bar and history.
function takeTokenFromLink() {
  const m = location.hash.match(/^#token=([A-Za-z0-9_-]+)$/);
  if (m) {
    setToken(m[1], false);
    history.replaceState(null, '', `${location.pathname}#/`);
  }
}

takeTokenFromLink();
window.addEventListener('hashchange', route);
window.addEventListener('zenith-signed-out', () => loginPage(document.getElementById('view'), 'Signed out: the token was refused.'));
document.getElementById('signout').addEventListener('click', () => { signOut(); route(); });
route();
