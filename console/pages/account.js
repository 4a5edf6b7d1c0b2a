// My account: profile, avatar, password, personal access tokens (the secret shown once), notifications.
import {api, del, get, post, put} from '../api.js';
import {
  bindForm, checkbox, clear, confirmAction, errorView, field, h, load, loadingView, pageHeading, section,
  showSecretOnce, tableRegion, emptyRow, timeElement, uid,
} from '../dom.js';
import {passwordForm} from './password-change.js';

const SCOPES = [
  ['api:read', 'read the management API'],
  ['api:write', 'change through the management API (not create tokens)'],
  ['registry:pull', 'pull images'],
  ['registry:push', 'pull and push images'],
  ['registry:delete', 'delete images and tags'],
];
const NOTIFICATION_EVENTS = [
  ['push', 'Pushes'], ['delete', 'Deletes'], ['quota_warning', 'Quota warnings'],
  ['quota_exceeded', 'Quota exceeded'], ['import_completed', 'Imports completed'], ['import_failed', 'Imports failed'],
];

function profileForm(ctx) {
  const me = ctx.me;
  const displayName = h('input', {name: 'display_name', required: true, maxlength: '64', value: me.display_name || '',
    autocomplete: 'name'});
  const email = h('input', {name: 'email', type: 'email', maxlength: '254', value: me.email || '', autocomplete: 'email'});
  const bio = h('textarea', {name: 'bio', maxlength: '500', rows: '3', value: me.bio || ''});
  return bindForm(h('form', {'aria-label': 'Profile'},
    h('p', {}, 'Username ', h('strong', {}, me.username), me.is_admin ? ' (administrator)' : ''),
    field('Display name', displayName), field('Email', email), field('Bio', bio),
    h('div', {class: 'actions'}, h('button', {type: 'submit'}, 'Save profile'))), async () => {
    await put('/users/me', {display_name: displayName.value, email: email.value.trim() || null, bio: bio.value});
    await ctx.refreshMe();
    return 'Profile saved.';
  });
}

function avatarSection(ctx) {
  const preview = h('div', {class: 'avatar-preview'});
  const showAvatar = async (me) => {
    clear(preview);
    if (!me.avatar_url) {
      preview.append(h('p', {class: 'muted'}, 'No avatar yet.'));
      return;
    }
    try {
      const url = URL.createObjectURL(await get('/users/me/avatar', {binary: true, signal: ctx.signal}));
      const img = h('img', {src: url, alt: 'Your avatar', class: 'avatar', width: '96', height: '96'});
      img.addEventListener('load', () => URL.revokeObjectURL(url));
      preview.append(img);
    } catch (error) {
      if (error.name !== 'AbortError') preview.append(errorView(error));
    }
  };
  const file = h('input', {type: 'file', name: 'avatar', accept: 'image/png,image/jpeg,image/webp', required: true});
  const form = bindForm(h('form', {'aria-label': 'Avatar'}, field('Image file', file, 'PNG, JPEG or WebP, at most 2 MiB.'),
    h('div', {class: 'actions'}, h('button', {type: 'submit'}, 'Upload avatar'))), async () => {
    if (!file.files.length) throw new Error('Choose an image file first.');
    // The API takes the raw image bytes as the body.
    await api('POST', '/users/me/avatar', {raw: file.files[0]});
    form.reset();
    await showAvatar(await ctx.refreshMe());
    return 'Avatar uploaded.';
  });
  showAvatar(ctx.me);
  return section('Avatar', preview, form);
}

function patSection(ctx) {
  const list = h('div', {});
  const refresh = () => load(list, () => get('/users/me/pat', {signal: ctx.signal}), (pats) =>
    tableRegion('Personal access tokens', ['Name', 'Starts with', 'Scopes', 'Expires', 'Created', 'Last used', 'Actions'],
      pats.length ? pats.map((pat) => {
        const revoke = h('button', {type: 'button', class: 'danger small', 'aria-label': `Revoke ${pat.name}`}, 'Revoke');
        const cell = h('td', {}, revoke);
        revoke.addEventListener('click', async () => {
          if (!await confirmAction(`Revoke ${pat.name}?`, 'Everything using this token stops working at once.',
            'Revoke token')) return;
          cell.append(loadingView('Revoking'));
          try {
            await del(`/users/me/pat/${encodeURIComponent(pat.id)}`);
            refresh();
          } catch (error) {
            cell.replaceChildren(revoke, errorView(error));
          }
        });
        const expired = pat.expires_at && new Date(pat.expires_at) < new Date();
        return h('tr', {},
          h('th', {scope: 'row'}, pat.name),
          h('td', {}, h('code', {}, `${pat.prefix}…`)),
          h('td', {}, pat.scopes.join(', ')),
          h('td', {}, pat.expires_at ? timeElement(pat.expires_at) : 'never', expired ? ' (expired)' : ''),
          h('td', {}, timeElement(pat.created_at)),
          h('td', {}, timeElement(pat.last_used_at)),
          cell);
      }) : [emptyRow(7, 'No tokens.')]), 'Loading tokens');

  const name = h('input', {name: 'name', required: true, maxlength: '64'});
  const scopeBoxes = SCOPES.map(([scope, text]) => {
    const input = h('input', {type: 'checkbox', name: 'scopes', value: scope, id: uid('scope'),
      checked: scope === 'registry:pull'});
    return h('div', {class: 'check'}, input, h('label', {for: input.id}, h('code', {}, scope), ` ${text}`));
  });
  const expires = h('input', {name: 'expires', type: 'date'});
  const form = h('form', {'aria-label': 'New personal access token'},
    field('Name', name, 'What the token is for, e.g. ci.'),
    h('fieldset', {}, h('legend', {}, 'Scopes'), scopeBoxes),
    field('Expires on (optional)', expires, 'The token stops working at the end of this day (UTC). Empty: never.'),
    h('div', {class: 'actions'}, h('button', {type: 'submit'}, 'Create token')));
  bindForm(form, async () => {
    const scopes = [...form.querySelectorAll('input[name=scopes]:checked')].map((i) => i.value);
    if (!scopes.length) throw new Error('Pick at least one scope.');
    const body = {name: name.value, scopes};
    if (expires.value) body.expires_at = `${expires.value}T23:59:59Z`;
    const created = await post('/users/me/pat', body);
    form.reset();
    refresh();
    // The secret exists only in this dialog; closing it removes it from the page.
    await showSecretOnce('Your new token', `Copy the token "${created.name}" now: it is shown only this once. Use it ` +
      'as a bearer token for the API, or as the password for docker login, skopeo and podman.', created.token);
    return `Token ${created.name} created.`;
  });
  refresh();
  return section('Personal access tokens',
    h('p', {}, 'Tokens for scripts and registry clients, limited to the scopes you pick.'), list,
    h('details', {class: 'create'}, h('summary', {}, 'New token'), form));
}

function notificationSection(ctx) {
  const area = h('div', {});
  load(area, () => get('/users/me/notification-settings', {signal: ctx.signal}), (settings) => {
    const email = checkbox('Send notifications by email', {name: 'email_enabled', checked: settings.email_enabled});
    const boxes = NOTIFICATION_EVENTS.map(([key, label]) =>
      checkbox(label, {name: key, checked: Boolean(settings.events[key])}));
    return bindForm(h('form', {'aria-label': 'Notifications'}, email,
      h('fieldset', {}, h('legend', {}, 'Notify me of'), boxes),
      h('p', {class: 'muted small'}, 'Stored for notification delivery; this version sends no email yet.'),
      h('div', {class: 'actions'}, h('button', {type: 'submit'}, 'Save notifications'))), async () => {
      const events = {};
      NOTIFICATION_EVENTS.forEach(([key], i) => { events[key] = boxes[i].querySelector('input').checked; });
      await put('/users/me/notification-settings', {email_enabled: email.querySelector('input').checked, events});
      return 'Notification settings saved.';
    });
  }, 'Loading notification settings');
  return section('Notifications', area);
}

export async function render(main, ctx) {
  main.append(pageHeading('My account'),
    section('Profile', profileForm(ctx)),
    avatarSection(ctx),
    section('Password', passwordForm()),
    patSection(ctx),
    notificationSection(ctx));
}
