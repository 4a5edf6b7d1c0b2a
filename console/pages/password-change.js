// The forced password change (users/me says must_change_password), and the form the account page reuses.
import {put} from '../api.js';
import {bindForm, field, h, notice, pageHeading} from '../dom.js';

export const PASSWORD_RULE = 'At least 8 characters, mixing three of: lowercase, uppercase, digits, symbols; ' +
  'not containing the username.';

// A form for PUT /users/me/password; `done` runs after the change.
export function passwordForm(done) {
  const old = h('input', {name: 'old_password', type: 'password', autocomplete: 'current-password', required: true,
    maxlength: '256'});
  const fresh = h('input', {name: 'new_password', type: 'password', autocomplete: 'new-password', required: true,
    minlength: '8', maxlength: '256'});
  const again = h('input', {name: 'new_password_again', type: 'password', autocomplete: 'new-password', required: true,
    minlength: '8', maxlength: '256'});
  const form = h('form', {class: 'password-form', 'aria-label': 'Change password'},
    field('Current password', old), field('New password', fresh, PASSWORD_RULE), field('New password again', again),
    h('div', {class: 'actions'}, h('button', {type: 'submit'}, 'Change password')));
  bindForm(form, async () => {
    if (fresh.value !== again.value) throw new Error('The two new passwords differ.');
    await put('/users/me/password', {old_password: old.value, new_password: fresh.value});
    form.reset();
    return done ? done() : 'Password changed. Your other sessions have been signed out.';
  });
  return form;
}

export async function render(main, ctx) {
  const next = ctx.query.get('next') || 'projects';
  main.append(h('div', {class: 'narrow'}, pageHeading('Choose a new password'),
    ctx.me.must_change_password
      ? notice('Your password was set by someone else (the first start, or an administrator). ' +
        'Choose your own before going on.', 'warning')
      : null,
    h('div', {class: 'card'}, passwordForm(async () => {
      await ctx.refreshMe();
      ctx.navigate(next === 'change-password' ? 'projects' : next);
    }))));
}
