// The console's shell: the routes (#/projects/…), the navigation, who is signed in, and the forced password
// change. Each page module renders into <main> with a context: {me, params, signal, navigate, refreshMe,
// onLeave}. A page left is told through `signal` (its requests are aborted) and its onLeave callbacks.
import {get, onSessionEnded, signOut, signedIn} from './api.js';
import {clear, errorView, h, loadingView} from './dom.js';
import * as account from './pages/account.js';
import * as audit from './pages/audit.js';
import * as passwordChange from './pages/password-change.js';
import * as project from './pages/project.js';
import * as projects from './pages/projects.js';
import * as repository from './pages/repository.js';
import * as signin from './pages/signin.js';
import * as tag from './pages/tag.js';
import * as users from './pages/users.js';
import * as webhooks from './pages/webhooks.js';

// [pattern, render, options]: `:name` segments are parameters; `anonymous` pages work without signing in.
const ROUTES = [
  ['signin', signin.render, {anonymous: true}],
  ['change-password', passwordChange.render, {}],
  ['projects', projects.render, {anonymous: true}],
  ['projects/:project', project.render, {anonymous: true}],
  ['projects/:project/:tab', project.render, {anonymous: true}],
  ['projects/:project/repositories/:repository', repository.render, {anonymous: true}],
  ['projects/:project/repositories/:repository/tags/:tag', tag.render, {anonymous: true}],
  ['webhooks', webhooks.renderList, {}],
  ['webhooks/:webhook', webhooks.renderDetail, {}],
  ['account', account.render, {}],
  ['admin/users', users.render, {admin: true}],
  ['audit', audit.render, {}],
];

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const state = {me: null, leaving: null, avatarUrl: null};

function parseHash() {
  const hash = location.hash.startsWith('#/') ? location.hash.slice(2) : 'projects';
  const [path, queryText] = hash.split('?');
  const segments = path.split('/').filter(Boolean).map((part) => {
    try {
      return decodeURIComponent(part);
    } catch {
      return part;
    }
  });
  return {segments, query: new URLSearchParams(queryText || '')};
}

function match(segments) {
  for (const [pattern, render, options] of ROUTES) {
    const parts = pattern.split('/');
    if (parts.length !== segments.length) continue;
    const params = {};
    if (parts.every((part, i) => (part.startsWith(':') ? (params[part.slice(1)] = segments[i], true) : part === segments[i]))) {
      return {render, options, params};
    }
  }
  return null;
}

export function navigate(path) {
  location.hash = `#/${path}`;
}

async function loadMe() {
  state.me = signedIn() ? await get('/users/me') : null;
  await loadAvatar();
  return state.me;
}

async function loadAvatar() {
  if (state.avatarUrl) URL.revokeObjectURL(state.avatarUrl);
  state.avatarUrl = null;
  if (state.me && state.me.avatar_url) {
    try {
      state.avatarUrl = URL.createObjectURL(await get('/users/me/avatar', {binary: true}));
    } catch {
      state.avatarUrl = null; // the avatar is decoration: the page works without it
    }
  }
}

function navLink(href, text, current) {
  return h('a', {href, 'aria-current': current ? 'page' : null}, text);
}

function renderNav(segments) {
  const here = segments.join('/');
  const section = segments[0] || 'projects';
  const links = [navLink('#/projects', 'Projects', section === 'projects')];
  if (state.me) {
    links.push(navLink('#/webhooks', 'Webhooks', section === 'webhooks'));
    links.push(navLink('#/audit', 'Audit log', section === 'audit'));
    if (state.me.is_admin) links.push(navLink('#/admin/users', 'Users', here === 'admin/users'));
    const who = [state.avatarUrl ? h('img', {src: state.avatarUrl, alt: '', class: 'avatar-small', width: '24', height: '24'}) : null,
      state.me.display_name || state.me.username];
    links.push(h('a', {href: '#/account', class: 'account-link', 'aria-current': section === 'account' ? 'page' : null},
      h('span', {class: 'visually-hidden'}, 'My account: '), who));
    links.push(h('button', {type: 'button', class: 'link-button', onclick: onSignOut}, 'Sign out'));
  } else {
    links.push(navLink(`#/signin?next=${encodeURIComponent(here)}`, 'Sign in', section === 'signin'));
  }
  clear(nav, h('ul', {}, links.map((link) => h('li', {}, link))));
}

async function onSignOut() {
  await signOut();
  state.me = null;
  await loadAvatar();
  navigate('signin');
}

let current = 0;

async function route() {
  if (location.hash && !location.hash.startsWith('#/')) return; // an in-page anchor, not a route
  current += 1;
  const ticket = current;
  if (state.leaving) state.leaving();
  const controller = new AbortController();
  const leaveCallbacks = [];
  state.leaving = () => {
    controller.abort();
    leaveCallbacks.forEach((callback) => callback());
  };
  const {segments, query} = parseHash();
  const found = match(segments);
  if (signedIn() && state.me === null) {
    clear(main, loadingView());
    try {
      await loadMe();
    } catch (error) {
      if (signedIn()) {
        clear(main, errorView(error, route));
        return;
      }
    }
    if (ticket !== current) return;
  }
  if (!found) {
    renderNav(segments);
    clear(main, h('h1', {tabindex: '-1'}, 'Page not found'),
      h('p', {}, 'There is no page at this address. ', h('a', {href: '#/projects'}, 'Go to the projects.')));
    document.title = 'Not found · CYP-Registry';
    return;
  }
  const {render, options, params} = found;
  if (!state.me && !options.anonymous) {
    navigate(`signin?next=${encodeURIComponent(segments.join('/'))}`);
    return;
  }
  if (state.me && state.me.must_change_password && segments[0] !== 'change-password') {
    navigate('change-password');
    return;
  }
  if (options.admin && !state.me.is_admin) {
    renderNav(segments);
    clear(main, h('h1', {tabindex: '-1'}, 'Administrators only'),
      h('p', {}, 'This page is for administrators.'));
    return;
  }
  renderNav(segments);
  clear(main);
  const context = {
    me: state.me, params, query, signal: controller.signal, navigate,
    onLeave: (callback) => leaveCallbacks.push(callback),
    refreshMe: async () => {
      await loadMe();
      renderNav(segments);
      return state.me;
    },
    isCurrent: () => ticket === current,
  };
  try {
    await render(main, context);
  } catch (error) {
    if (error.name !== 'AbortError' && ticket === current) main.append(errorView(error));
  }
  // After a navigation, focus goes to the new page's heading, unless the page put it somewhere itself.
  if (ticket === current && !(main.contains(document.activeElement) && document.activeElement !== main)) {
    const heading = main.querySelector('h1');
    if (heading) heading.focus({preventScroll: true});
  }
}

onSessionEnded(() => {
  state.me = null;
  const here = parseHash().segments.join('/');
  navigate(`signin?next=${encodeURIComponent(here.startsWith('signin') ? 'projects' : here)}&ended=1`);
});

document.querySelector('.skip-link').addEventListener('click', (event) => {
  event.preventDefault();
  main.focus();
});

window.addEventListener('hashchange', route);
route();
