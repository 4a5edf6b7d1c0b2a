// The projects the caller can see: search, visibility filter, usage against quota, and a form to create one.
import {get, post} from '../api.js';
import {bindForm, checkbox, debounce, field, formatBytes, h, load, pageHeading, pager, section} from '../dom.js';
import {projectHref, quotaInput, usageView, visibilityBadge} from './common.js';

const NAME_HINT = 'Lowercase letters and digits, optionally separated by . _ __ or -; at most 64 characters. ' +
  'It is the first part of every repository name and cannot be changed.';

function createForm(ctx) {
  const name = h('input', {name: 'name', required: true, maxlength: '64', pattern: '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*',
    autocapitalize: 'none', spellcheck: 'false'});
  const description = h('textarea', {name: 'description', maxlength: '1000', rows: '2'});
  const isPublic = checkbox('Public: anyone may pull its images', {name: 'is_public'});
  const quota = quotaInput('Quota (empty: the default)');
  const form = h('form', {class: 'create-form', 'aria-label': 'New project'},
    field('Name', name, NAME_HINT), field('Description', description), isPublic,
    ctx.me.is_admin ? quota.element : null,
    h('div', {class: 'actions'}, h('button', {type: 'submit'}, 'Create project')));
  bindForm(form, async () => {
    const body = {name: name.value.trim(), description: description.value,
      is_public: isPublic.querySelector('input').checked};
    if (ctx.me.is_admin && quota.bytes() !== null) body.storage_quota = quota.bytes();
    const created = await post('/projects', body, {signal: ctx.signal});
    location.hash = projectHref(created.name);
  });
  return h('details', {class: 'card create'}, h('summary', {}, 'New project'), form);
}

function projectRow(project) {
  return h('li', {class: 'card project-item'},
    h('div', {class: 'project-title'},
      h('h3', {}, h('a', {href: projectHref(project.name)}, project.name)), visibilityBadge(project)),
    project.description ? h('p', {class: 'description'}, project.description) : null,
    usageView(project.storage_used, project.storage_quota, `Storage used by ${project.name} of its quota`),
    h('p', {class: 'muted small'},
      `${project.repository_count} repositor${project.repository_count === 1 ? 'y' : 'ies'} · ` +
      `${project.image_count} image${project.image_count === 1 ? '' : 's'}`));
}

function statisticsView(stats) {
  const figure = (label, value) => h('div', {class: 'stat'}, h('dt', {}, label), h('dd', {}, value));
  return h('dl', {class: 'stats'},
    figure('Projects', `${stats.total_projects} (${stats.public_projects} public)`),
    figure('Repositories', String(stats.repository_count)),
    figure('Images', String(stats.image_count)),
    figure('Storage used', formatBytes(stats.storage_used)));
}

export async function render(main, ctx) {
  const search = h('input', {type: 'search', name: 'search', maxlength: '64', autocomplete: 'off'});
  const visibility = h('select', {name: 'visibility'},
    h('option', {value: ''}, 'All'), h('option', {value: 'true'}, 'Public'), h('option', {value: 'false'}, 'Private'));
  const list = h('div', {class: 'project-list'});
  const stats = h('div', {class: 'stats-area'});
  let page = 1;

  const refresh = () => load(list, () => get('/projects', {signal: ctx.signal, query: {
    search: search.value.trim(), is_public: visibility.value, page, page_size: 20,
  }}), (data) => [
    data.items.length
      ? h('ul', {class: 'plain-list'}, data.items.map(projectRow))
      : h('p', {class: 'muted'}, search.value || visibility.value ? 'No project matches.' : 'No projects yet.'),
    pager(data, (p) => { page = p; refresh(); }),
  ], 'Loading projects');

  const filters = h('form', {role: 'search', class: 'filters', 'aria-label': 'Find projects',
    onsubmit: (event) => { event.preventDefault(); page = 1; refresh(); }},
  field('Search by name', search), field('Visibility', visibility));
  search.addEventListener('input', debounce(() => { page = 1; refresh(); }));
  visibility.addEventListener('change', () => { page = 1; refresh(); });

  main.append(pageHeading('Projects'), stats, ctx.me ? createForm(ctx) : null,
    section('All projects', filters, list));
  await Promise.all([
    load(stats, () => get('/projects/statistics', {signal: ctx.signal}), statisticsView, 'Loading totals'),
    refresh(),
  ]);
}
