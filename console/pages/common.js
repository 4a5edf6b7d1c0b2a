// Pieces several pages share: a project by name, its usage against its quota, its badge, pull commands.
import {get, segment} from '../api.js';
import {badge, copyLine, formatBytes, h} from '../dom.js';

// The project named `name`. The API takes a name or an id, except that /projects/statistics is the
// statistics route: a project of that name is found by listing.
export async function resolveProject(name, signal) {
  if (name !== 'statistics') return get(`/projects/${segment(name)}`, {signal});
  const page = await get('/projects', {query: {search: name, page_size: 100}, signal});
  const found = page.items.find((item) => item.name === name);
  if (!found) throw Object.assign(new Error('project not found'), {code: 20001});
  return found;
}

export function canManage(me, project) {
  return Boolean(me && (me.is_admin || me.id === project.owner_id));
}

export function visibilityBadge(project) {
  return project.is_public ? badge('Public', 'public') : badge('Private', 'private');
}

export function usagePercent(used, quota) {
  if (quota < 0) return null;
  if (quota === 0) return 100;
  return Math.round((used / quota) * 1000) / 10;
}

// Usage against quota: a meter (amber from 80 %, red from 95 %) and the figures in words.
export function usageView(used, quota, label) {
  const percent = usagePercent(used, quota);
  if (percent === null) {
    return h('div', {class: 'usage'}, h('span', {}, `${formatBytes(used)} used · no quota`));
  }
  const max = Math.max(quota, 1);
  const meter = h('meter', {min: '0', max: String(max), low: String(max * 0.8), high: String(max * 0.95),
    optimum: '0', value: String(Math.min(used, max)), 'aria-label': label || 'Storage used of the quota'});
  return h('div', {class: 'usage'}, meter,
    h('span', {}, `${formatBytes(used)} of ${formatBytes(quota)} (${percent} %)`));
}

// The address clients pull from: the host this console was loaded from.
export function registryHost() {
  return location.host;
}

export function imageReference(repository, reference) {
  const separator = reference.startsWith('sha256:') || reference.startsWith('sha512:') ? '@' : ':';
  return `${registryHost()}/${repository}${separator}${reference}`;
}

// docker and podman commands for one image; podman is told to skip TLS on a plain-HTTP registry.
export function pullCommands(repository, reference) {
  const image = imageReference(repository, reference);
  const podmanTls = location.protocol === 'http:' ? ' --tls-verify=false' : '';
  return h('div', {class: 'pull-commands'},
    copyLine(`docker pull ${image}`, 'Copy the docker pull command'),
    copyLine(`podman pull${podmanTls} ${image}`, 'Copy the podman pull command'));
}

// The hash route of a project page, of a repository (its path inside the project), of a tag.
export function projectHref(name, tab) {
  return `#/projects/${encodeURIComponent(name)}${tab ? `/${tab}` : ''}`;
}

export function repositoryHref(project, repositoryPath) {
  return `${projectHref(project)}/repositories/${encodeURIComponent(repositoryPath)}`;
}

export function tagHref(project, repositoryPath, tag) {
  return `${repositoryHref(project, repositoryPath)}/tags/${encodeURIComponent(tag)}`;
}

// "team/app/backend" in project "team" is "app/backend".
export function pathInProject(project, fullName) {
  return fullName.startsWith(`${project}/`) ? fullName.slice(project.length + 1) : fullName;
}

export function repositoryApi(projectId, repositoryPath) {
  return `/projects/${segment(projectId)}/repositories/${segment(repositoryPath)}`;
}

const QUOTA_UNITS = [['MiB', 1024 ** 2], ['GiB', 1024 ** 3], ['TiB', 1024 ** 4]];

// A quota in bytes from a number and a unit; empty means `emptyMeaning` (unlimited is -1).
export function quotaInput(labelText, current) {
  const amount = h('input', {type: 'number', min: '0', step: 'any', name: 'quota_amount', class: 'quota-amount'});
  const unit = h('select', {name: 'quota_unit', 'aria-label': `${labelText}: unit`},
    QUOTA_UNITS.map(([name, size]) => h('option', {value: String(size)}, name)));
  unit.value = String(1024 ** 3);
  if (current !== undefined && current >= 0) {
    const [, size] = [...QUOTA_UNITS].reverse().find(([, s]) => current % s === 0 && current >= s) || QUOTA_UNITS[0];
    unit.value = String(size);
    amount.value = String(current / size);
  }
  const id = `q-${Math.random().toString(36).slice(2, 9)}`;
  amount.id = id;
  return {
    element: h('div', {class: 'field'}, h('label', {for: id}, labelText), h('div', {class: 'quota-input'}, amount, unit)),
    bytes: () => (amount.value === '' ? null : Math.round(Number(amount.value) * Number(unit.value))),
  };
}
