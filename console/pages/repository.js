// One repository: its tags (digest, kind, platforms, size, last push and pull, referrers), pull commands, and
// deleting the whole repository.
import {del, get} from '../api.js';
import {
  clear, confirmAction, dash, errorView, formatBytes, h, load, loadingView, pageHeading, pager, section,
  shortDigest, tableRegion, emptyRow, timeElement,
} from '../dom.js';
import {
  canManage, projectHref, pullCommands, repositoryApi, resolveProject, tagHref,
} from './common.js';

const KINDS = {
  'application/vnd.oci.image.index.v1+json': 'index',
  'application/vnd.docker.distribution.manifest.list.v2+json': 'index',
  'application/vnd.oci.image.manifest.v1+json': 'image',
  'application/vnd.docker.distribution.manifest.v2+json': 'image',
};

export function manifestKind(mediaType) {
  return KINDS[mediaType] || mediaType || '—';
}

export function platformName(platform) {
  if (!platform.os && !platform.architecture) return 'unknown platform';
  return [platform.os, platform.architecture, platform.variant].filter(Boolean).join('/');
}

function tagRow(project, path, item) {
  return h('tr', {},
    h('th', {scope: 'row'}, h('a', {href: tagHref(project.name, path, item.tag)}, item.tag)),
    h('td', {}, h('code', {title: item.digest}, shortDigest(item.digest))),
    h('td', {}, manifestKind(item.media_type)),
    h('td', {}, item.platforms ? item.platforms.map(platformName).join(', ') : '—'),
    h('td', {}, formatBytes(item.size)),
    h('td', {}, timeElement(item.pushed_at)),
    h('td', {}, timeElement(item.last_pulled_at)),
    h('td', {}, dash(item.referrers_count)));
}

export async function render(main, ctx) {
  const path = ctx.params.repository;
  const head = h('div', {}, loadingView('Loading the repository'));
  const body = h('div', {});
  main.append(head, body);
  let project;
  try {
    project = await resolveProject(ctx.params.project, ctx.signal);
  } catch (error) {
    if (error.name !== 'AbortError') clear(head, pageHeading(path), errorView(error));
    return;
  }
  const fullName = `${project.name}/${path}`;
  clear(head,
    h('nav', {class: 'breadcrumbs', 'aria-label': 'Breadcrumbs'}, h('ol', {},
      h('li', {}, h('a', {href: '#/projects'}, 'Projects')),
      h('li', {}, h('a', {href: projectHref(project.name)}, project.name)))),
    pageHeading(fullName));

  const tags = h('div', {});
  const pullArea = h('div', {});
  let page = 1;
  const refresh = () => load(tags, () => get(`${repositoryApi(project.id, path)}/tags`, {signal: ctx.signal,
    query: {page, page_size: 50}}), (data) => {
    clear(pullArea, data.items.length ? pullCommands(fullName, data.items[0].tag)
      : h('p', {class: 'muted'}, 'This repository has no tags.'));
    return [
      tableRegion(`Tags of ${fullName}`,
        ['Tag', 'Digest', 'Kind', 'Platforms', 'Size', 'Pushed', 'Last pull', 'Referrers'],
        data.items.length ? data.items.map((item) => tagRow(project, path, item)) : [emptyRow(8, 'No tags.')]),
      pager(data, (p) => { page = p; refresh(); }),
    ];
  }, 'Loading tags');

  body.append(section('Pull', pullArea), section('Tags', tags));
  if (canManage(ctx.me, project)) {
    const status = h('div', {'aria-live': 'polite'});
    const button = h('button', {type: 'button', class: 'danger'}, 'Delete repository');
    button.addEventListener('click', async () => {
      if (!await confirmAction(`Delete ${fullName}?`, `Every tag and image of ${fullName} will be deleted. ` +
        'This cannot be undone.', 'Delete repository')) return;
      status.replaceChildren(loadingView('Deleting'));
      try {
        await del(repositoryApi(project.id, path));
        ctx.navigate(`projects/${encodeURIComponent(project.name)}`);
      } catch (error) {
        status.replaceChildren(errorView(error));
      }
    });
    body.append(section('Delete', h('p', {}, 'Deleting the repository deletes all its tags and images.'), button,
      status));
  }
  await refresh();
}
