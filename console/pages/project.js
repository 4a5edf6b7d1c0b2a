// One project: its repositories, storage per repository as a chart, imports, webhooks and settings (tabs).
import {del, get, patch, put, segment} from '../api.js';
import {
  bindForm, checkbox, clear, confirmAction, copyLine, dash, debounce, errorView, field, formatBytes, h, load,
  loadingView, pageHeading, pager, section, svg, tableRegion, emptyRow, timeElement,
} from '../dom.js';
import {
  canManage, pathInProject, projectHref, quotaInput, registryHost, repositoryHref, resolveProject, usageView,
  visibilityBadge,
} from './common.js';
import {renderImports} from './imports.js';
import {renderWebhookList} from './webhooks.js';

const TABS = [
  ['', 'Repositories', true],
  ['storage', 'Storage', true],
  ['imports', 'Imports', false],
  ['webhooks', 'Webhooks', false],
  ['settings', 'Settings', false],
];

function tabsNav(project, active, manager) {
  return h('nav', {class: 'tabs', 'aria-label': 'Project sections'}, h('ul', {},
    TABS.filter(([, , open]) => open || manager).map(([tab, label]) => h('li', {},
      h('a', {href: projectHref(project.name, tab), 'aria-current': tab === active ? 'page' : null}, label)))));
}

function repositoriesTab(container, ctx, project) {
  const search = h('input', {type: 'search', maxlength: '64', autocomplete: 'off'});
  const list = h('div', {});
  let page = 1;
  const refresh = () => load(list, () => get(`/projects/${segment(project.id)}/repositories`, {signal: ctx.signal,
    query: {search: search.value.trim(), page, page_size: 20}}), (data) => [
    tableRegion('Repositories', ['Repository', 'Tags', 'Size', 'Last push', 'Pulls'],
      data.items.length ? data.items.map((repo) => h('tr', {},
        h('th', {scope: 'row'}, h('a', {href: repositoryHref(project.name, pathInProject(project.name, repo.name))},
          repo.name)),
        h('td', {}, String(repo.tag_count)),
        h('td', {}, formatBytes(repo.size)),
        h('td', {}, timeElement(repo.last_push)),
        h('td', {}, dash(repo.pull_count)))) : [emptyRow(5, search.value ? 'No repository matches.'
        : 'No repositories yet: push an image to create one.')]),
    pager(data, (p) => { page = p; refresh(); }),
  ], 'Loading repositories');
  search.addEventListener('input', debounce(() => { page = 1; refresh(); }));
  container.append(
    section('Push an image',
      h('p', {}, 'Repositories are created by pushing: log in with your username and password or a personal ' +
        'access token, then push to this project.'),
      copyLine(`docker login ${registryHost()}`, 'Copy the docker login command'),
      copyLine(`docker push ${registryHost()}/${project.name}/REPOSITORY:TAG`, 'Copy the docker push command')),
    section('Repositories', h('form', {role: 'search', class: 'filters', 'aria-label': 'Find repositories',
      onsubmit: (event) => { event.preventDefault(); page = 1; refresh(); }},
    field('Search repositories', search)), list));
  return refresh();
}

// Storage per repository: one bar per repository, scaled to the largest, with its size in words beside it.
export function storageChart(repositories) {
  if (!repositories.length) return h('p', {class: 'muted'}, 'Nothing stored yet.');
  const largest = Math.max(...repositories.map((repo) => repo.size), 1);
  const sorted = [...repositories].sort((a, b) => b.size - a.size);
  return h('figure', {class: 'chart'},
    h('figcaption', {}, 'Bytes each repository links (a blob shared by two repositories counts in both)'),
    h('ol', {class: 'bars'}, sorted.map((repo) => {
      const width = Math.max((repo.size / largest) * 100, repo.size > 0 ? 0.5 : 0);
      return h('li', {class: 'bar-row'},
        h('span', {class: 'bar-label'}, repo.name),
        svg('svg', {class: 'bar', viewBox: '0 0 100 10', preserveAspectRatio: 'none', 'aria-hidden': 'true',
          focusable: 'false'}, svg('rect', {x: '0', y: '0', width: String(width), height: '10', class: 'bar-fill'})),
        h('span', {class: 'bar-value'}, `${formatBytes(repo.size)} · ${repo.blob_count} blobs · ` +
          `${repo.manifest_count} manifests`));
    })));
}

function storageTab(container, ctx, project) {
  const area = h('div', {});
  container.append(section('Storage per repository', area));
  return load(area, () => get(`/projects/${segment(project.id)}/storage`, {signal: ctx.signal}), (storage) => [
    usageView(storage.storage_used, storage.storage_quota, 'Storage used of the quota'),
    storageChart(storage.repositories),
  ], 'Loading storage');
}

function settingsTab(container, ctx, project, reload) {
  const visibility = checkbox('Public: anyone, signed in or not, may see and pull its images',
    {role: 'switch', checked: project.is_public});
  const visibilityInput = visibility.querySelector('input');
  const visibilityStatus = h('div', {'aria-live': 'polite'});
  visibilityInput.addEventListener('change', async () => {
    visibilityInput.disabled = true;
    visibilityStatus.replaceChildren(loadingView('Saving'));
    try {
      await patch(`/projects/${segment(project.id)}`, {is_public: visibilityInput.checked});
      visibilityStatus.replaceChildren(h('p', {class: 'notice notice-success'},
        visibilityInput.checked ? 'The project is public.' : 'The project is private.'));
      await reload();
    } catch (error) {
      visibilityInput.checked = !visibilityInput.checked;
      visibilityStatus.replaceChildren(errorView(error));
    } finally {
      visibilityInput.disabled = false;
    }
  });

  const description = h('textarea', {name: 'description', maxlength: '1000', rows: '3', value: project.description});
  const descriptionForm = bindForm(h('form', {'aria-label': 'Description'}, field('Description', description),
    h('div', {class: 'actions'}, h('button', {type: 'submit'}, 'Save description'))), async () => {
    await patch(`/projects/${segment(project.id)}`, {description: description.value});
    await reload();
    return 'Description saved.';
  });

  const parts = [
    section('Visibility', visibility, visibilityStatus),
    section('Description', descriptionForm),
  ];
  if (ctx.me.is_admin) {
    const quota = quotaInput('Storage quota (empty: unlimited)', project.storage_quota);
    parts.push(section('Quota', bindForm(h('form', {'aria-label': 'Quota'}, quota.element,
      h('div', {class: 'actions'}, h('button', {type: 'submit'}, 'Save quota'))), async () => {
      const bytes = quota.bytes();
      await put(`/projects/${segment(project.id)}/quota`, {storage_quota: bytes === null ? -1 : bytes});
      await reload();
      return bytes === null ? 'The project has no quota now.' : `Quota set to ${formatBytes(bytes)}.`;
    })));
  }
  const deleteButton = h('button', {type: 'button', class: 'danger'}, 'Delete project');
  const deleteStatus = h('div', {'aria-live': 'polite'});
  deleteButton.addEventListener('click', async () => {
    const confirmed = await confirmAction(`Delete project ${project.name}?`,
      `Every repository, tag and image of ${project.name} will be deleted. This cannot be undone.`, 'Delete project');
    if (!confirmed) return;
    deleteStatus.replaceChildren(loadingView('Deleting'));
    try {
      await del(`/projects/${segment(project.id)}`, {query: {force: 'true'}});
      ctx.navigate('projects');
    } catch (error) {
      deleteStatus.replaceChildren(errorView(error));
    }
  });
  parts.push(section('Delete', h('p', {}, 'Deleting a project deletes everything it holds.'), deleteButton,
    deleteStatus));
  container.append(...parts);
}

export async function render(main, ctx) {
  const tab = ctx.params.tab || '';
  if (!TABS.some(([name]) => name === tab)) {
    main.append(pageHeading('Page not found'), h('p', {}, 'This project has no such page.'));
    return;
  }
  const head = h('div', {});
  const body = h('div', {class: 'tab-body'});
  main.append(head, body);
  const show = async () => {
    const project = await resolveProject(ctx.params.project, ctx.signal);
    const manager = canManage(ctx.me, project);
    clear(head, pageHeading(project.name, visibilityBadge(project)),
      project.description ? h('p', {class: 'description'}, project.description) : null,
      usageView(project.storage_used, project.storage_quota, 'Storage used of the quota'),
      tabsNav(project, tab, manager));
    return {project, manager};
  };
  const open = async () => {
    head.replaceChildren(loadingView('Loading the project'));
    let shown;
    try {
      shown = await show();
    } catch (error) {
      if (error.name !== 'AbortError') clear(head, pageHeading(ctx.params.project), errorView(error, open));
      return;
    }
    const {project, manager} = shown;
    if (!TABS.find(([name]) => name === tab)[2] && !manager) {
      body.append(h('p', {}, 'Only the project\'s owner and administrators see this page.'));
    } else if (tab === '') await repositoriesTab(body, ctx, project);
    else if (tab === 'storage') await storageTab(body, ctx, project);
    else if (tab === 'imports') await renderImports(body, ctx, project);
    else if (tab === 'webhooks') await renderWebhookList(body, ctx, project);
    else settingsTab(body, ctx, project, show);
  };
  await open();
}
