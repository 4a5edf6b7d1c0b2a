// Image import: the form, live progress of the tasks (polled while any is pending or running), and the
// task list with failures explained (the task's message and its last error).
import {del, get, post, segment} from '../api.js';
import {
  badge, bindForm, clear, errorView, field, formatBytes, h, pager, section, tableRegion, emptyRow, timeElement,
} from '../dom.js';
import {pathInProject, repositoryHref} from './common.js';

const POLL_MS = 1000;
const ACTIVE = new Set(['pending', 'running']);
const STATUS_KIND = {pending: 'neutral', running: 'info', completed: 'success', failed: 'danger', cancelled: 'neutral'};

function progressView(task) {
  const details = task.details || {};
  const bytes = details.bytes_total ? ` · ${formatBytes(details.bytes_done)} of ${formatBytes(details.bytes_total)}` : '';
  return h('div', {class: 'progress'},
    h('progress', {max: '100', value: String(task.progress || 0), 'aria-label': `Progress of ${task.image}`}),
    h('span', {}, `${task.progress || 0} %${bytes}`));
}

function explanation(task) {
  const details = task.details || {};
  const lines = [h('p', {class: 'task-message'}, task.message || '')];
  if (task.status === 'failed' && details.last_error && details.last_error !== task.message) {
    lines.push(h('p', {class: 'task-error'}, 'Last error: ', details.last_error));
  }
  if (details.platforms_skipped && details.platforms_skipped.length) {
    lines.push(h('p', {class: 'muted small'}, `Platforms skipped: ${details.platforms_skipped.join(', ')}`));
  }
  return lines;
}

function taskRow(ctx, project, task, refresh) {
  const target = task.repository ? `${task.repository}:${task.tag || ''}` : '—';
  const targetCell = task.status === 'completed' && task.repository
    ? h('a', {href: repositoryHref(project.name, pathInProject(project.name, task.repository))}, target) : target;
  let cancel = null;
  if (ACTIVE.has(task.status)) {
    cancel = h('button', {type: 'button', class: 'secondary small', 'aria-label': `Cancel the import of ${task.image}`},
      'Cancel');
    cancel.addEventListener('click', async () => {
      cancel.disabled = true;
      try {
        await del(`/projects/${segment(project.id)}/images/import/${segment(task.task_id)}`);
        refresh();
      } catch (error) {
        cancel.replaceWith(errorView(error));
      }
    });
  }
  return h('tr', {class: `task task-${task.status}`},
    h('th', {scope: 'row'}, task.image),
    h('td', {}, targetCell),
    h('td', {}, badge(task.status, STATUS_KIND[task.status] || 'neutral')),
    h('td', {}, progressView(task)),
    h('td', {}, explanation(task)),
    h('td', {}, timeElement(task.updated_at)),
    h('td', {}, cancel || ''));
}

export async function renderImports(container, ctx, project) {
  const base = `/projects/${segment(project.id)}/images/import`;
  const list = h('div', {});
  const status = h('select', {name: 'status'}, h('option', {value: ''}, 'All'),
    ['pending', 'running', 'completed', 'failed', 'cancelled'].map((s) => h('option', {value: s}, s)));
  let page = 1;
  let timer = null;
  let lastShown = null;
  ctx.onLeave(() => clearTimeout(timer));

  const refresh = async () => {
    clearTimeout(timer);
    let data;
    try {
      data = await get(base, {signal: ctx.signal, query: {status: status.value, page, page_size: 20}});
    } catch (error) {
      if (error.name !== 'AbortError') clear(list, errorView(error, refresh));
      return;
    }
    if (!ctx.isCurrent()) return;
    // Polling re-renders only what changed, so a reader's place (and focus) in an unchanged list stays.
    const shown = JSON.stringify(data);
    if (shown !== lastShown) {
      lastShown = shown;
      clear(list,
        tableRegion('Import tasks', ['Image', 'Into', 'Status', 'Progress', 'Details', 'Updated', 'Actions'],
          data.items.length ? data.items.map((task) => taskRow(ctx, project, task, refresh))
            : [emptyRow(7, 'No imports yet.')]),
        pager(data, (p) => { page = p; refresh(); }));
    }
    // Live progress: poll while a task is still on its way.
    if (data.items.some((task) => ACTIVE.has(task.status))) timer = setTimeout(refresh, POLL_MS);
  };

  const image = h('input', {name: 'image', required: true, maxlength: '512', autocapitalize: 'none', spellcheck: 'false',
    placeholder: 'registry.example.com/team/app:1.0'});
  const repository = h('input', {name: 'repository', maxlength: '200', autocapitalize: 'none', spellcheck: 'false'});
  const platforms = h('input', {name: 'platforms', maxlength: '2000', autocapitalize: 'none', spellcheck: 'false',
    placeholder: 'linux/amd64, linux/arm64'});
  const username = h('input', {name: 'username', maxlength: '256', autocomplete: 'off'});
  const password = h('input', {name: 'password', type: 'password', maxlength: '4096', autocomplete: 'new-password'});
  const form = h('form', {'aria-label': 'Import an image'},
    field('Image', image, 'As the docker CLI reads it: nginx:1.27, ghcr.io/org/app@sha256:…, host:5000/team/app:v1.'),
    field('Repository in this project (optional)', repository, 'Default: the source path without library/.'),
    field('Platforms (optional)', platforms, 'Comma-separated os/architecture[/variant]; default: all of an index.'),
    h('details', {class: 'credentials'}, h('summary', {}, 'Credentials for the remote registry (optional)'),
      field('Username', username), field('Password', password,
        'Kept encrypted only while the import needs it; never shown again.')),
    h('div', {class: 'actions'}, h('button', {type: 'submit'}, 'Import')));
  bindForm(form, async () => {
    const body = {image: image.value.trim()};
    if (repository.value.trim()) body.repository = repository.value.trim();
    const wanted = platforms.value.split(',').map((p) => p.trim()).filter(Boolean);
    if (wanted.length) body.platforms = wanted;
    if (username.value) body.username = username.value;
    if (password.value) body.password = password.value;
    const task = await post(base, body, {signal: ctx.signal});
    password.value = '';
    page = 1;
    await refresh();
    return `Import of ${task.image} started.`;
  });
  status.addEventListener('change', () => { page = 1; refresh(); });

  container.append(section('Import an image', form),
    section('Import tasks', h('div', {class: 'filters'}, field('Status', status)), list));
  clear(list, h('p', {class: 'loading', role: 'status'}, 'Loading import tasks…'));
  await refresh();
}
