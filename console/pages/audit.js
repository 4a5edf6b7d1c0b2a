// The audit log (GET /audit-logs): who did what, from where, with which outcome. Administrators see every
// record; anyone else the records of their projects and of their own account. Filters: time range, user,
// project, operation, outcome; a preset for failed sign-ins.
import {get} from '../api.js';
import {
  badge, bindForm, dash, field, h, load, pageHeading, pager, section, tableRegion, emptyRow, timeElement,
} from '../dom.js';

export const OPERATIONS = [
  'artifact.push', 'artifact.pull', 'artifact.delete', 'tag.delete', 'repository.delete', 'blob.upload',
  'blob.delete', 'auth.login', 'auth.logout', 'auth.token', 'pat.create', 'pat.revoke', 'user.create',
  'user.update', 'user.delete', 'user.password', 'project.create', 'project.update', 'project.delete',
  'project.quota', 'project.recount', 'import.create', 'import.cancel', 'import.complete', 'import.fail',
  'webhook.create', 'webhook.update', 'webhook.delete', 'webhook.test', 'webhook.redeliver', 'system.gc',
];
// A choice of the operation filter that stands for several operations at once.
const FAILED_SIGN_INS = 'auth.login,auth.token';

function resourceView(resource) {
  const entries = Object.entries(resource || {});
  if (!entries.length) return '—';
  return h('ul', {class: 'annotations'}, entries.map(([key, value]) =>
    h('li', {}, h('span', {class: 'muted'}, `${key} `), Array.isArray(value) ? value.join(', ') : String(value))));
}

function recordRow(record) {
  const failed = record.outcome === 'failure';
  return h('tr', {class: failed ? 'failure' : null},
    h('td', {}, timeElement(record.at)),
    h('th', {scope: 'row'}, record.operation, record.count > 1 ? h('span', {class: 'muted small'}, ` ×${record.count}`) : null),
    h('td', {}, badge(record.outcome, failed ? 'danger' : 'success'),
      record.status ? h('span', {class: 'small'}, ` ${record.status}`) : null,
      record.error_code !== null && record.error_code !== undefined
        ? h('span', {class: 'small'}, ' ', h('code', {}, String(record.error_code))) : null),
    h('td', {}, record.username || '—'),
    h('td', {}, dash(record.address)),
    h('td', {}, dash(record.project_name)),
    h('td', {}, resourceView(record.resource)),
    h('td', {}, record.trace_id ? h('code', {}, record.trace_id) : '—'));
}

// A datetime-local value (the reader's local time) as the API's UTC time.
function isoTime(localValue) {
  return localValue ? new Date(localValue).toISOString() : null;
}

export async function render(main, ctx) {
  const from = h('input', {type: 'datetime-local', name: 'from'});
  const to = h('input', {type: 'datetime-local', name: 'to'});
  const username = h('input', {name: 'username', maxlength: '64', autocomplete: 'off', autocapitalize: 'none',
    spellcheck: 'false'});
  const project = h('select', {name: 'project_id'}, h('option', {value: ''}, 'All projects'));
  const operation = h('select', {name: 'operation'}, h('option', {value: ''}, 'All operations'),
    h('option', {value: FAILED_SIGN_INS}, 'Sign-ins and registry logins'),
    OPERATIONS.map((name) => h('option', {value: name}, name)));
  const outcome = h('select', {name: 'outcome'}, h('option', {value: ''}, 'Any outcome'),
    h('option', {value: 'success'}, 'success'), h('option', {value: 'failure'}, 'failure'));
  const list = h('div', {});
  let page = 1;

  const query = () => ({from: isoTime(from.value), to: isoTime(to.value), username: username.value.trim(),
    project_id: project.value, operation: operation.value, outcome: outcome.value, page, page_size: 50});
  const refresh = () => load(list, () => get('/audit-logs', {signal: ctx.signal, query: query()}), (data) => [
    tableRegion('Audit records',
      ['Time', 'Operation', 'Outcome', 'User', 'Address', 'Project', 'Resource', 'Trace id'],
      data.items.length ? data.items.map(recordRow) : [emptyRow(8, 'No record matches.')]),
    pager(data, (p) => { page = p; refresh(); }),
  ], 'Loading the audit log');

  const failedSignIns = h('button', {type: 'button', class: 'secondary', onclick: () => {
    operation.value = FAILED_SIGN_INS;
    outcome.value = 'failure';
    page = 1;
    refresh();
  }}, 'Show failed sign-ins');
  const filters = bindForm(h('form', {class: 'filters audit-filters', 'aria-label': 'Filter the audit log'},
    field('From', from), field('Until', to), field('Username', username), field('Project', project),
    field('Operation', operation), field('Outcome', outcome),
    h('div', {class: 'actions'}, h('button', {type: 'submit'}, 'Apply filters'), failedSignIns,
      h('button', {type: 'reset', class: 'secondary'}, 'Clear'))), async () => {
    page = 1;
    await refresh();
  });
  filters.addEventListener('reset', () => setTimeout(() => { page = 1; refresh(); }));

  const projectsStatus = h('div', {});
  main.append(pageHeading('Audit log'),
    h('p', {}, ctx.me.is_admin ? 'Every recorded action, newest first.'
      : 'The records of your projects and of your own account, newest first.'),
    section('Filters', filters, projectsStatus), section('Records', list));
  // The project filter's choices; without them the log still reads, unfiltered by project.
  const choices = load(projectsStatus, () => get('/projects', {signal: ctx.signal, query: {page_size: 100}}),
    (projects) => { projects.items.forEach((item) => project.append(h('option', {value: item.id}, item.name))); },
    'Loading projects');
  await Promise.all([choices, refresh()]);
}
