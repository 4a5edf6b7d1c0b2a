// Webhooks: the list and the form with its event picker (a project's, or for administrators every project's),
// and one webhook's page: its settings, the test button, and the delivery log with redelivery.
import {del, get, post, put, segment} from '../api.js';
import {
  badge, bindForm, checkbox, clear, confirmAction, dash, errorView, field, h, load, loadingView, notice,
  pageHeading, pager, section, showSecretOnce, tableRegion, emptyRow, timeElement, uid,
} from '../dom.js';
import {projectHref} from './common.js';

export const EVENT_TYPES = [
  ['PUSH_ARTIFACT', 'Push', 'a manifest pushed with a tag, a tag moved, a referrer pushed'],
  ['PULL_ARTIFACT', 'Pull', 'a manifest pulled'],
  ['DELETE_ARTIFACT', 'Delete', 'a manifest or tag deleted'],
  ['QUOTA_WARNING', 'Quota warning', 'usage crossed 80 % of the quota'],
  ['QUOTA_EXCEEDED', 'Quota exceeded', 'a push refused, or usage over the quota'],
  ['IMPORT_COMPLETED', 'Import completed', 'an image import finished'],
  ['IMPORT_FAILED', 'Import failed', 'an image import failed'],
  ['PING', 'Ping', 'the test button'],
];
const DELIVERY_KIND = {pending: 'neutral', sending: 'info', succeeded: 'success', failed: 'danger'};

function eventPicker(selected) {
  const boxes = EVENT_TYPES.map(([type, label, description]) => {
    const input = h('input', {type: 'checkbox', name: 'events', value: type, id: uid('ev'),
      checked: selected.includes(type)});
    return h('div', {class: 'check'}, input,
      h('label', {for: input.id}, label, h('span', {class: 'muted small'}, ` (${type}): ${description}`)));
  });
  const fieldset = h('fieldset', {class: 'event-picker'}, h('legend', {}, 'Events'), boxes);
  return {element: fieldset, value: () => [...fieldset.querySelectorAll('input:checked')].map((i) => i.value)};
}

function webhookForm(ctx, {project, webhook, projects, onSaved}) {
  const current = webhook || {events: ['PUSH_ARTIFACT'], repository_filter: '*', tag_filter: '*', format: 'default',
    enabled: true};
  const name = h('input', {name: 'name', required: true, maxlength: '100', value: current.name || ''});
  const url = h('input', {name: 'url', type: 'url', required: true, maxlength: '2048', value: current.url || '',
    placeholder: 'https://ci.example.com/hook'});
  const events = eventPicker(current.events);
  const repositoryFilter = h('input', {name: 'repository_filter', required: true, maxlength: '255',
    value: current.repository_filter});
  const tagFilter = h('input', {name: 'tag_filter', required: true, maxlength: '128', value: current.tag_filter});
  const format = h('select', {name: 'format'}, h('option', {value: 'default'}, 'JSON'),
    h('option', {value: 'cloudevents'}, 'CloudEvents 1.0 (structured JSON)'));
  format.value = current.format;
  const enabled = checkbox('Enabled', {name: 'enabled', checked: current.enabled});
  let projectSelect = null;
  if (!webhook && !project) {
    projectSelect = h('select', {name: 'project_id', required: true},
      ctx.me.is_admin ? h('option', {value: ''}, 'Every project (global)') : null,
      projects.map((p) => h('option', {value: p.id}, p.name)));
  }
  const form = h('form', {'aria-label': webhook ? 'Webhook settings' : 'New webhook'},
    field('Name', name), field('URL', url, 'http or https; the address must be one the server may reach.'),
    projectSelect ? field('Project', projectSelect) : null,
    events.element,
    field('Repository filter', repositoryFilter, 'A glob on the full repository name, e.g. team/*.'),
    field('Tag filter', tagFilter, 'A glob on the tags, e.g. v*.'),
    field('Payload format', format), enabled,
    h('div', {class: 'actions'}, h('button', {type: 'submit'}, webhook ? 'Save webhook' : 'Create webhook')));
  bindForm(form, async () => {
    const body = {name: name.value, url: url.value.trim(), events: events.value(),
      repository_filter: repositoryFilter.value, tag_filter: tagFilter.value, format: format.value,
      enabled: enabled.querySelector('input').checked};
    if (!body.events.length) throw new Error('Pick at least one event.');
    if (webhook) {
      const saved = await put(`/webhooks/${segment(webhook.id)}`, body);
      return onSaved(saved);
    }
    body.project_id = project ? project.id : (projectSelect.value || null);
    const created = await post('/webhooks', body);
    await showSecretOnce('Webhook secret', 'Receivers verify each delivery\'s signature with this secret. It is ' +
      'shown only now: copy it before closing.', created.secret);
    return onSaved(created);
  });
  return form;
}

function webhookRows(webhooks, projectNames) {
  return webhooks.map((webhook) => h('tr', {},
    h('th', {scope: 'row'}, h('a', {href: `#/webhooks/${encodeURIComponent(webhook.id)}`}, webhook.name)),
    h('td', {}, webhook.project_id ? (projectNames.get(webhook.project_id) || webhook.project_id) : 'every project'),
    h('td', {class: 'url'}, webhook.url),
    h('td', {}, webhook.events.join(', ')),
    h('td', {}, webhook.enabled ? badge('enabled', 'success') : badge('disabled', 'neutral'),
      webhook.disabled_reason ? h('span', {class: 'small'}, ` ${webhook.disabled_reason}`) : null),
    h('td', {}, webhook.last_status ? String(webhook.last_status) : '—', ' ', timeElement(webhook.last_delivery_at))));
}

// The webhooks of `project` (or, without one, every webhook the caller manages) with a form to add one.
export async function renderWebhookList(container, ctx, project) {
  const list = h('div', {});
  const formArea = h('div', {});
  let page = 1;
  let projects = project ? [project] : [];
  const refresh = () => load(list, () => get('/webhooks', {signal: ctx.signal,
    query: {project_id: project ? project.id : null, page, page_size: 20}}), (data) => [
    tableRegion('Webhooks', ['Name', 'Project', 'URL', 'Events', 'State', 'Last delivery'],
      data.items.length ? webhookRows(data.items, new Map(projects.map((p) => [p.id, p.name])))
        : [emptyRow(6, 'No webhooks yet.')]),
    pager(data, (p) => { page = p; refresh(); }),
  ], 'Loading webhooks');
  container.append(section('Webhooks', list), h('details', {class: 'card create'},
    h('summary', {}, 'New webhook'), formArea));
  if (!project) {
    // The projects a webhook may be for: the caller's own (administrators: all).
    const mine = await get('/projects', {signal: ctx.signal, query: {page_size: 100}});
    projects = mine.items.filter((p) => ctx.me.is_admin || p.owner_id === ctx.me.id);
  }
  formArea.append(webhookForm(ctx, {project, projects, onSaved: async (created) => {
    ctx.navigate(`webhooks/${encodeURIComponent(created.id)}`);
  }}));
  await refresh();
}

export async function renderList(main, ctx) {
  main.append(pageHeading('Webhooks'),
    h('p', {}, 'A webhook sends a signed HTTP POST to its URL for each event it picks.'));
  const area = h('div', {});
  main.append(area);
  await renderWebhookList(area, ctx, null);
}

function excerpt(text, length = 300) {
  if (!text) return '';
  return text.length > length ? `${text.slice(0, length)}…` : text;
}

function deliveryRow(webhook, delivery, refresh) {
  const last = delivery.attempts && delivery.attempts.length ? delivery.attempts[delivery.attempts.length - 1] : null;
  const response = last && last.response ? last.response.body : '';
  const redeliver = h('button', {type: 'button', class: 'secondary small',
    'aria-label': `Redeliver ${delivery.event_type} of ${delivery.created_at}`}, 'Redeliver');
  const cell = h('td', {}, redeliver);
  redeliver.addEventListener('click', async () => {
    redeliver.disabled = true;
    cell.append(loadingView('Redelivering'));
    try {
      await post(`/webhooks/${segment(webhook.id)}/deliveries/${segment(delivery.id)}/redeliver`);
      refresh();
    } catch (error) {
      cell.replaceChildren(redeliver, errorView(error));
      redeliver.disabled = false;
    }
  });
  return h('tr', {class: `delivery delivery-${delivery.status}`},
    h('th', {scope: 'row'}, delivery.event_type, delivery.redelivery ? h('span', {class: 'small muted'}, ' (again)') : null),
    h('td', {}, badge(delivery.status, DELIVERY_KIND[delivery.status] || 'neutral')),
    h('td', {}, last && last.status ? String(last.status) : '—'),
    h('td', {}, timeElement(last ? last.at : delivery.created_at)),
    h('td', {}, String(delivery.attempt_count), last && last.duration_ms !== undefined && last.duration_ms !== null
      ? h('span', {class: 'small muted'}, ` (${Math.round(last.duration_ms)} ms)`) : null),
    h('td', {class: 'response'},
      response ? h('details', {}, h('summary', {}, h('code', {}, excerpt(response, 60))), h('pre', {}, response)) : '—',
      delivery.last_error || (last && last.error) ? h('p', {class: 'task-error'}, delivery.last_error || last.error) : null),
    cell);
}

function deliveryLog(ctx, webhook) {
  const list = h('div', {});
  const status = h('select', {name: 'status'}, h('option', {value: ''}, 'All'),
    ['pending', 'sending', 'succeeded', 'failed'].map((s) => h('option', {value: s}, s)));
  let page = 1;
  const refresh = () => load(list, () => get(`/webhooks/${segment(webhook.id)}/deliveries`, {signal: ctx.signal,
    query: {status: status.value, page, page_size: 20}}), (data) => [
    tableRegion('Deliveries', ['Event', 'Status', 'HTTP', 'Time', 'Attempts', 'Response', 'Actions'],
      data.items.length ? data.items.map((delivery) => deliveryRow(webhook, delivery, refresh))
        : [emptyRow(7, 'No deliveries yet.')]),
    pager(data, (p) => { page = p; refresh(); }),
  ], 'Loading deliveries');
  status.addEventListener('change', () => { page = 1; refresh(); });
  const reload = h('button', {type: 'button', class: 'secondary', onclick: () => refresh()}, 'Reload');
  return {element: section('Delivery log', h('div', {class: 'filters'}, field('Status', status), reload), list),
    refresh};
}

export async function renderDetail(main, ctx) {
  const area = h('div', {}, loadingView('Loading the webhook'));
  main.append(area);
  let webhook;
  let project = null;
  try {
    webhook = await get(`/webhooks/${segment(ctx.params.webhook)}`, {signal: ctx.signal});
    if (webhook.project_id) project = await get(`/projects/${segment(webhook.project_id)}`, {signal: ctx.signal});
  } catch (error) {
    if (error.name !== 'AbortError') clear(area, pageHeading('Webhook'), errorView(error));
    return;
  }
  const log = deliveryLog(ctx, webhook);
  const testStatus = h('div', {'aria-live': 'polite'});
  const testButton = h('button', {type: 'button'}, 'Send a test (PING)');
  testButton.addEventListener('click', async () => {
    testButton.disabled = true;
    testStatus.replaceChildren(loadingView('Sending a test'));
    try {
      const delivery = await post(`/webhooks/${segment(webhook.id)}/test`);
      const last = delivery.attempts && delivery.attempts[delivery.attempts.length - 1];
      testStatus.replaceChildren(notice(`Test delivery ${delivery.status}` +
        (last && last.status ? `: the receiver answered ${last.status}.` : (last && last.error ? `: ${last.error}` : '.')),
      delivery.status === 'succeeded' ? 'success' : 'warning'));
      log.refresh();
    } catch (error) {
      testStatus.replaceChildren(errorView(error));
    } finally {
      testButton.disabled = false;
    }
  });
  const deleteButton = h('button', {type: 'button', class: 'danger'}, 'Delete webhook');
  const deleteStatus = h('div', {'aria-live': 'polite'});
  deleteButton.addEventListener('click', async () => {
    if (!await confirmAction(`Delete webhook ${webhook.name}?`, 'It stops receiving events, and its delivery log is ' +
      'deleted with it.', 'Delete webhook')) return;
    deleteStatus.replaceChildren(loadingView('Deleting'));
    try {
      await del(`/webhooks/${segment(webhook.id)}`);
      ctx.navigate(project ? `projects/${encodeURIComponent(project.name)}/webhooks` : 'webhooks');
    } catch (error) {
      deleteStatus.replaceChildren(errorView(error));
    }
  });
  const rotate = h('button', {type: 'button', class: 'secondary'}, 'Rotate the secret');
  const rotateStatus = h('div', {'aria-live': 'polite'});
  rotate.addEventListener('click', async () => {
    try {
      const rotated = await put(`/webhooks/${segment(webhook.id)}`, {rotate_secret: true});
      await showSecretOnce('New webhook secret', 'The previous secret keeps signing beside this one for a while. ' +
        'This one is shown only now: copy it before closing.', rotated.secret);
      rotateStatus.replaceChildren(notice('Secret rotated.', 'success'));
    } catch (error) {
      rotateStatus.replaceChildren(errorView(error));
    }
  });
  clear(area,
    h('nav', {class: 'breadcrumbs', 'aria-label': 'Breadcrumbs'}, h('ol', {},
      h('li', {}, project ? h('a', {href: projectHref(project.name, 'webhooks')}, `${project.name} webhooks`)
        : h('a', {href: '#/webhooks'}, 'Webhooks')))),
    pageHeading(webhook.name, webhook.enabled ? badge('enabled', 'success') : badge('disabled', 'neutral')),
    h('p', {class: 'url'}, webhook.url),
    webhook.disabled_reason ? notice(`Disabled: ${webhook.disabled_reason}`, 'warning') : null,
    section('Test', h('p', {}, 'Sends a PING event through the same pipeline and shows its first attempt.'),
      testButton, testStatus),
    log.element,
    h('details', {class: 'card'}, h('summary', {}, 'Settings'),
      webhookForm(ctx, {webhook, onSaved: () => 'Webhook saved.'})),
    section('Secret', h('p', {}, `Deliveries are signed (webhook-signature). Failed events in a row: ` +
      `${dash(webhook.consecutive_failures)}.`), rotate, rotateStatus),
    section('Delete', deleteButton, deleteStatus));
  await log.refresh();
}
