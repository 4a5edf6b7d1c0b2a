// Administration of users: search, create, disable or enable, make or unmake administrator.
import {get, patch, post, segment} from '../api.js';
import {
  badge, bindForm, checkbox, debounce, errorView, field, h, load, loadingView, pageHeading, pager, section,
  tableRegion, emptyRow, timeElement,
} from '../dom.js';
import {PASSWORD_RULE} from './password-change.js';

function actionButton(label, ariaLabel, change, refresh, kind = 'secondary') {
  const button = h('button', {type: 'button', class: `${kind} small`, 'aria-label': ariaLabel}, label);
  button.addEventListener('click', async () => {
    button.disabled = true;
    const cell = button.parentElement;
    cell.append(loadingView('Saving'));
    try {
      await change();
      refresh();
    } catch (error) {
      cell.lastChild.replaceWith(errorView(error));
      button.disabled = false;
    }
  });
  return button;
}

function userRow(ctx, user, refresh) {
  const update = (fields) => () => patch(`/users/${segment(user.id)}`, fields);
  const states = [user.is_admin ? badge('administrator', 'info') : null, user.disabled ? badge('disabled', 'danger') : null,
    user.must_change_password ? badge('must change password', 'neutral') : null];
  return h('tr', {},
    h('th', {scope: 'row'}, user.username),
    h('td', {}, user.display_name || '—'),
    h('td', {}, user.email || '—'),
    h('td', {class: 'badges'}, states.some(Boolean) ? states : 'active'),
    h('td', {}, timeElement(user.last_login_at)),
    h('td', {class: 'row-actions'},
      actionButton(user.is_admin ? 'Remove admin' : 'Make admin',
        `${user.is_admin ? 'Remove admin' : 'Make admin'} ${user.username}`, update({is_admin: !user.is_admin}), refresh),
      actionButton(user.disabled ? 'Enable' : 'Disable', `${user.disabled ? 'Enable' : 'Disable'} ${user.username}`,
        update({disabled: !user.disabled}), refresh, user.disabled ? 'secondary' : 'danger')));
}

function createForm(refresh) {
  const username = h('input', {name: 'username', required: true, minlength: '3', maxlength: '64',
    pattern: '[A-Za-z0-9][A-Za-z0-9._\\-]{2,63}', autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false'});
  const password = h('input', {name: 'password', type: 'password', required: true, minlength: '8', maxlength: '256',
    autocomplete: 'new-password'});
  const email = h('input', {name: 'email', type: 'email', maxlength: '254', autocomplete: 'off'});
  const displayName = h('input', {name: 'display_name', maxlength: '64', autocomplete: 'off'});
  const isAdmin = checkbox('Administrator', {name: 'is_admin'});
  const form = h('form', {'aria-label': 'New user'},
    field('Username', username, '3–64 letters, digits, dots, underscores or hyphens.'),
    field('Password', password, PASSWORD_RULE),
    field('Email (optional)', email), field('Display name (optional)', displayName), isAdmin,
    h('div', {class: 'actions'}, h('button', {type: 'submit'}, 'Create user')));
  bindForm(form, async () => {
    const body = {username: username.value.trim(), password: password.value,
      is_admin: isAdmin.querySelector('input').checked};
    if (email.value.trim()) body.email = email.value.trim();
    if (displayName.value.trim()) body.display_name = displayName.value.trim();
    const created = await post('/users', body);
    form.reset();
    refresh();
    return `User ${created.username} created.`;
  });
  return h('details', {class: 'card create'}, h('summary', {}, 'New user'), form);
}

export async function render(main, ctx) {
  const search = h('input', {type: 'search', maxlength: '64', autocomplete: 'off'});
  const list = h('div', {});
  let page = 1;
  const refresh = () => load(list, () => get('/users', {signal: ctx.signal,
    query: {search: search.value.trim(), page, page_size: 50}}), (data) => [
    tableRegion('Users', ['Username', 'Display name', 'Email', 'State', 'Last sign-in', 'Actions'],
      data.items.length ? data.items.map((user) => userRow(ctx, user, refresh)) : [emptyRow(6, 'No user matches.')]),
    pager(data, (p) => { page = p; refresh(); }),
  ], 'Loading users');
  search.addEventListener('input', debounce(() => { page = 1; refresh(); }));
  main.append(pageHeading('Users'), createForm(refresh),
    section('All users', h('form', {role: 'search', class: 'filters', 'aria-label': 'Find users',
      onsubmit: (event) => { event.preventDefault(); page = 1; refresh(); }},
    field('Search by username, email or display name', search)), list));
  await refresh();
}
