// One tag: its manifest, an index's platforms, an image's config and layers with sizes, the referrers
// (signatures, SBOMs…), pull commands by tag and by digest, and deleting the tag.
import {del, get} from '../api.js';
import {
  clear, confirmAction, copyLine, dash, errorView, formatBytes, h, loadingView, pageHeading, section, shortDigest,
  tableRegion, emptyRow, timeElement,
} from '../dom.js';
import {canManage, projectHref, pullCommands, repositoryApi, repositoryHref, resolveProject} from './common.js';
import {manifestKind, platformName} from './repository.js';

function facts(detail) {
  const fact = (label, value) => h('div', {}, h('dt', {}, label), h('dd', {}, value));
  return h('dl', {class: 'facts'},
    fact('Digest', copyLine(detail.digest, 'Copy the digest')),
    fact('Kind', `${manifestKind(detail.media_type)} (${detail.media_type})`),
    fact('Size', `${formatBytes(detail.size)} (manifest ${formatBytes(detail.manifest_size)})`),
    fact('Pushed', timeElement(detail.pushed_at)),
    fact('Last pull', timeElement(detail.last_pulled_at)),
    fact('Referrers', dash(detail.referrers_count)));
}

function descriptorRows(descriptors) {
  return descriptors.map((item) => h('tr', {},
    h('td', {}, h('code', {title: item.digest}, shortDigest(item.digest))),
    h('td', {}, item.media_type || '—'),
    h('td', {}, formatBytes(item.size))));
}

function contentView(detail) {
  if (detail.platforms) {
    return section('Platforms', tableRegion('Platforms of this index', ['Platform', 'Digest', 'Kind', 'Size'],
      detail.platforms.length ? detail.platforms.map((item) => h('tr', {},
        h('th', {scope: 'row'}, platformName(item)),
        h('td', {}, h('code', {title: item.digest}, shortDigest(item.digest))),
        h('td', {}, manifestKind(item.media_type)),
        h('td', {}, formatBytes(item.size)))) : [emptyRow(4, 'The index lists no manifests.')]));
  }
  const layers = detail.layers || [];
  const total = layers.reduce((sum, layer) => sum + (layer.size || 0), 0);
  return section('Layers',
    detail.config ? h('p', {}, 'Config ', h('code', {title: detail.config.digest}, shortDigest(detail.config.digest)),
      ` · ${formatBytes(detail.config.size)}`) : null,
    tableRegion('Layers of this image', ['Digest', 'Media type', 'Size'],
      layers.length ? descriptorRows(layers) : [emptyRow(3, 'No layers.')]),
    h('p', {class: 'muted'}, `${layers.length} layer${layers.length === 1 ? '' : 's'}, ${formatBytes(total)}`));
}

function referrersView(referrers) {
  return section('Referrers', tableRegion('Referrers (signatures, SBOMs, attestations)',
    ['Artifact type', 'Digest', 'Size', 'Annotations'],
    referrers && referrers.length ? referrers.map((item) => h('tr', {},
      h('td', {}, item.artifact_type || item.media_type || '—'),
      h('td', {}, h('code', {title: item.digest}, shortDigest(item.digest))),
      h('td', {}, formatBytes(item.size)),
      h('td', {}, item.annotations && Object.keys(item.annotations).length
        ? h('ul', {class: 'annotations'}, Object.entries(item.annotations).map(([key, value]) =>
          h('li', {}, h('code', {}, key), ' = ', String(value))))
        : '—'))) : [emptyRow(4, 'Nothing refers to this manifest.')]));
}

export async function render(main, ctx) {
  const {repository: path, tag} = ctx.params;
  const area = h('div', {}, loadingView('Loading the tag'));
  main.append(area);
  let project;
  let detail;
  try {
    project = await resolveProject(ctx.params.project, ctx.signal);
    detail = await get(`${repositoryApi(project.id, path)}/tags/${encodeURIComponent(tag)}`, {signal: ctx.signal});
  } catch (error) {
    if (error.name !== 'AbortError') clear(area, pageHeading(`${path}:${tag}`), errorView(error));
    return;
  }
  const fullName = `${project.name}/${path}`;
  const parts = [
    h('nav', {class: 'breadcrumbs', 'aria-label': 'Breadcrumbs'}, h('ol', {},
      h('li', {}, h('a', {href: '#/projects'}, 'Projects')),
      h('li', {}, h('a', {href: projectHref(project.name)}, project.name)),
      h('li', {}, h('a', {href: repositoryHref(project.name, path)}, path)))),
    pageHeading(`${fullName}:${tag}`),
    section('Overview', facts(detail)),
    section('Pull', h('h3', {}, 'By tag'), pullCommands(fullName, tag),
      h('h3', {}, 'By digest'), pullCommands(fullName, detail.digest)),
    contentView(detail),
    referrersView(detail.referrers),
    section('Manifest', h('details', {}, h('summary', {}, 'Show the manifest'),
      h('pre', {class: 'manifest', tabindex: '0', 'aria-label': 'Manifest'}, JSON.stringify(detail.manifest, null, 2)))),
  ];
  if (canManage(ctx.me, project)) {
    const status = h('div', {'aria-live': 'polite'});
    const button = h('button', {type: 'button', class: 'danger'}, 'Delete tag');
    button.addEventListener('click', async () => {
      if (!await confirmAction(`Delete tag ${tag}?`, `The tag ${fullName}:${tag} will be deleted. Only the tag goes: ` +
        'the image stays, reachable by its digest.', 'Delete tag')) return;
      status.replaceChildren(loadingView('Deleting'));
      try {
        await del(`${repositoryApi(project.id, path)}/tags/${encodeURIComponent(tag)}`);
        ctx.navigate(`projects/${encodeURIComponent(project.name)}/repositories/${encodeURIComponent(path)}`);
      } catch (error) {
        status.replaceChildren(errorView(error));
      }
    });
    parts.push(section('Delete', button, status));
  }
  clear(area, ...parts);
}
