// Sign-in, with the first-start hint: the server answers the bootstrap administrator's one-time password
// once (GET /auth/default-admin-once); the console shows it to whoever opens this page first.
import {get, signIn, signedIn} from '../api.js';
import {bindForm, copyLine, errorView, field, h, loadingView, notice, pageHeading} from '../dom.js';

let hint; // the one answer of default-admin-once, kept for this page's lifetime

async function fetchHint() {
  if (hint === undefined) {
    try {
      hint = {data: await get('/auth/default-admin-once')};
    } catch (error) {
      hint = error.code === 20003 ? {data: null} : {error};
    }
  }
  return hint;
}

function hintView({data, error}) {
  if (error) return errorView(error);
  if (!data) return null;
  if (!data.password) {
    return h('div', {class: 'card hint-card'}, h('h2', {}, 'First start'),
      h('p', {}, 'The administrator account ', h('strong', {}, data.username),
        ' was created with the password set in the configuration (bootstrap_admin_password).'));
  }
  return h('div', {class: 'card hint-card'}, h('h2', {}, 'First start'),
    h('p', {}, 'The administrator account ', h('strong', {}, data.username),
      ' was created with this one-time password. It is shown only this once: sign in and choose a new one.'),
    copyLine(data.password, 'Copy the one-time password'));
}

export async function render(main, ctx) {
  const next = ctx.query.get('next') || 'projects';
  if (signedIn() && ctx.me) {
    ctx.navigate(next);
    return;
  }
  const hintArea = h('div', {class: 'hint-area'}, loadingView('Checking for a first-start password'));
  const username = h('input', {name: 'username', autocomplete: 'username', required: true, maxlength: '64',
    autocapitalize: 'none', spellcheck: 'false'});
  const password = h('input', {name: 'password', type: 'password', autocomplete: 'current-password', required: true,
    maxlength: '256'});
  const form = h('form', {class: 'card signin-form', 'aria-label': 'Sign in'},
    field('Username', username), field('Password', password),
    h('div', {class: 'actions'}, h('button', {type: 'submit'}, 'Sign in')));
  bindForm(form, async () => {
    await signIn(username.value.trim(), password.value);
    password.value = '';
    hint = {data: null}; // it has served its purpose: not shown again in this tab
    const me = await ctx.refreshMe();
    ctx.navigate(me.must_change_password ? `change-password?next=${encodeURIComponent(next)}` : next);
  });
  main.append(h('div', {class: 'narrow'}, pageHeading('Sign in'),
    ctx.query.get('ended') ? notice('Your session has ended. Sign in again.', 'info') : null,
    hintArea, form));
  username.focus();
  const answer = await fetchHint();
  hintArea.replaceChildren();
  const view = hintView(answer);
  if (view) hintArea.append(view);
  if (answer.data && answer.data.password && !username.value) username.value = answer.data.username;
}
