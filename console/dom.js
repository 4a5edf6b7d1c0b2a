// Building the page with DOM APIs: every value from the API goes in as text (textContent, attributes),
// never as markup, so a name like <img src=x onerror=…> stays the characters it is.

const SVG_NS = 'http://www.w3.org/2000/svg';
let idCounter = 0;

export function uid(prefix = 'id') {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

function applyProps(element, props) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') element.setAttribute('class', Array.isArray(value) ? value.filter(Boolean).join(' ') : value);
    else if (key === 'text') element.textContent = String(value);
    else if (key.startsWith('on') && typeof value === 'function') element.addEventListener(key.slice(2), value);
    else if (key === 'value' || key === 'checked' || key === 'selected' || key === 'disabled' || key === 'open') element[key] = value;
    else element.setAttribute(key, value === true ? '' : String(value));
  }
  return element;
}

// h('a', {href: '#/x', class: 'link'}, 'text', child…)
export function h(tag, props, ...children) {
  return append(applyProps(document.createElement(tag), props), children);
}

export function svg(tag, props, ...children) {
  return append(applyProps(document.createElementNS(SVG_NS, tag), props), children);
}

export function clear(element, ...children) {
  element.replaceChildren();
  return append(element, children);
}

// -- formatting ---------------------------------------------------------------------------------

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return '—';
  let value = Number(bytes);
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${UNITS[unit]}`;
}

function pad(n) {
  return String(n).padStart(2, '0');
}

// A time from the API (RFC 3339, or Unix seconds) as a <time> in the reader's local time; "—" for none.
export function timeElement(value) {
  if (value === null || value === undefined || value === '') return h('span', {class: 'muted', title: 'never'}, '—');
  const date = typeof value === 'number' ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return h('span', {}, String(value));
  const text = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}`;
  return h('time', {datetime: date.toISOString(), title: date.toISOString()}, text);
}

export function shortDigest(digest) {
  if (!digest) return '—';
  const [algorithm, hex] = digest.split(':');
  return hex ? `${algorithm}:${hex.slice(0, 12)}` : digest;
}

export function dash(value) {
  return value === null || value === undefined || value === '' ? '—' : String(value);
}

// -- status: loading, errors, notices -----------------------------------------------------------

export function loadingView(what = 'Loading') {
  return h('p', {class: 'loading', role: 'status'}, `${what}…`);
}

// An API error shows its message, its code and the trace id to quote when reporting it.
export function errorView(error, retry) {
  const box = h('div', {class: 'error', role: 'alert'},
    h('p', {class: 'error-message'}, error && error.message ? error.message : String(error)));
  const facts = [];
  if (error && error.code) facts.push(h('span', {}, 'code ', h('code', {}, String(error.code))));
  if (error && error.traceId) facts.push(h('span', {}, 'trace id ', h('code', {class: 'trace-id'}, error.traceId)));
  if (facts.length) box.append(h('p', {class: 'error-facts'}, facts.flatMap((f, i) => (i ? [' · ', f] : [f]))));
  if (retry) box.append(h('button', {type: 'button', class: 'secondary', onclick: retry}, 'Try again'));
  return box;
}

export function notice(text, kind = 'info') {
  return h('p', {class: `notice notice-${kind}`, role: 'status'}, text);
}

function isAbort(error) {
  return error && error.name === 'AbortError';
}

// Show "Loading…" in `container`, then what `render` builds from the answer, or the error with a retry button.
export async function load(container, fetcher, render, what = 'Loading') {
  container.setAttribute('aria-busy', 'true');
  container.replaceChildren(loadingView(what));
  try {
    const data = await fetcher();
    container.replaceChildren();
    const built = render(data);
    if (built) append(container, [built]);
  } catch (error) {
    if (isAbort(error)) return;
    container.replaceChildren(errorView(error, () => load(container, fetcher, render, what)));
  } finally {
    container.removeAttribute('aria-busy');
  }
}

// -- controls -----------------------------------------------------------------------------------

// A labelled control: <div class="field"><label for=…>Label</label> control <p id=…>hint</p></div>.
export function field(labelText, control, hint) {
  const id = control.id || uid('f');
  control.id = id;
  const wrapper = h('div', {class: 'field'}, h('label', {for: id}, labelText), control);
  if (hint) {
    const hintId = `${id}-hint`;
    control.setAttribute('aria-describedby', hintId);
    wrapper.append(h('p', {class: 'hint', id: hintId}, hint));
  }
  return wrapper;
}

export function checkbox(labelText, props = {}) {
  const input = h('input', {type: 'checkbox', ...props, id: props.id || uid('c')});
  return h('div', {class: 'check'}, input, h('label', {for: input.id}, labelText));
}

export function badge(text, kind) {
  return h('span', {class: `badge badge-${kind}`}, text);
}

// A button that copies `text()` to the clipboard and says so.
export function copyButton(text, label = 'Copy') {
  const status = h('span', {class: 'copy-status', role: 'status'});
  const button = h('button', {type: 'button', class: 'secondary copy', 'aria-label': `${label}`}, 'Copy');
  button.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(typeof text === 'function' ? text() : text);
      status.textContent = 'Copied';
    } catch {
      status.textContent = 'Copy failed: select the text and copy it';
    }
    setTimeout(() => { status.textContent = ''; }, 2500);
  });
  return h('span', {class: 'copy-wrap'}, button, status);
}

// A command or value with its copy button.
export function copyLine(value, label) {
  return h('div', {class: 'copy-line'}, h('code', {}, value), copyButton(value, label));
}

// A table in a focusable, labelled region, so that a table wider than the screen scrolls by keyboard too.
export function tableRegion(label, headers, rows, caption) {
  const table = h('table', {},
    caption ? h('caption', {class: caption.visible ? '' : 'visually-hidden'}, caption.text || label) : null,
    h('thead', {}, h('tr', {}, headers.map((name) => h('th', {scope: 'col'}, name)))),
    h('tbody', {}, rows));
  return h('div', {class: 'table-region', role: 'region', 'aria-label': label, tabindex: '0'}, table);
}

export function emptyRow(columns, text) {
  return h('tr', {}, h('td', {colspan: String(columns), class: 'muted'}, text));
}

// A form whose submit runs `action` with the button disabled, "Working…" announced, and an API error shown
// inside the form. `action` answers a success text (or nothing).
export function bindForm(form, action) {
  const status = h('div', {class: 'form-status', 'aria-live': 'polite'});
  form.append(status);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const buttons = form.querySelectorAll('button[type=submit]');
    buttons.forEach((b) => { b.disabled = true; });
    form.setAttribute('aria-busy', 'true');
    status.replaceChildren(loadingView('Working'));
    try {
      const message = await action(new FormData(form));
      status.replaceChildren(message ? notice(message, 'success') : '');
    } catch (error) {
      if (!isAbort(error)) status.replaceChildren(errorView(error));
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
      form.removeAttribute('aria-busy');
    }
  });
  return form;
}

// A modal <dialog>: focus moves into it, Escape closes it, and it is removed from the page when closed (a
// secret shown in it is gone with it).
export function openDialog(title, body, actions) {
  const titleId = uid('dialog-title');
  const dialog = h('dialog', {'aria-labelledby': titleId, class: 'dialog'},
    h('h2', {id: titleId}, title), body, h('div', {class: 'dialog-actions'}, actions));
  dialog.addEventListener('close', () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}

// Asks before something that cannot be undone; answers true when confirmed.
export function confirmAction(title, message, confirmLabel) {
  return new Promise((resolve) => {
    let confirmed = false;
    const cancel = h('button', {type: 'button', class: 'secondary', onclick: () => dialog.close()}, 'Cancel');
    const confirm = h('button', {type: 'button', class: 'danger', onclick: () => { confirmed = true; dialog.close(); }},
      confirmLabel);
    const dialog = openDialog(title, h('p', {}, message), [cancel, confirm]);
    dialog.addEventListener('close', () => resolve(confirmed));
    cancel.focus();
  });
}

// Shows a secret once, with a copy button; closing the dialog removes it from the page.
export function showSecretOnce(title, explanation, secret) {
  const input = h('input', {type: 'text', readonly: true, value: secret, class: 'secret', 'aria-label': title,
    spellcheck: 'false', autocomplete: 'off'});
  const done = h('button', {type: 'button', onclick: () => dialog.close()}, 'Done');
  const dialog = openDialog(title, [h('p', {}, explanation), h('div', {class: 'copy-line'}, input,
    copyButton(() => input.value, 'Copy the secret'))], [done]);
  dialog.addEventListener('close', () => { input.value = ''; });
  input.select();
  return new Promise((resolve) => dialog.addEventListener('close', resolve));
}

// Page title: the <h1> (focused after navigation) and the document title.
export function pageHeading(text, ...extra) {
  document.title = `${text} · CYP-Registry`;
  return h('div', {class: 'page-heading'}, h('h1', {tabindex: '-1'}, text), extra);
}

export function section(title, ...children) {
  const id = uid('s');
  return h('section', {'aria-labelledby': id, class: 'card'}, h('h2', {id}, title), children);
}

// Previous / next page links for a paged answer {items, total, page, page_size}.
export function pager(data, goTo) {
  const pages = Math.max(1, Math.ceil(data.total / data.page_size));
  if (pages <= 1) return null;
  return h('nav', {class: 'pager', 'aria-label': 'Pages'},
    h('button', {type: 'button', class: 'secondary', disabled: data.page <= 1, onclick: () => goTo(data.page - 1)},
      'Previous'),
    h('span', {}, `Page ${data.page} of ${pages} (${data.total})`),
    h('button', {type: 'button', class: 'secondary', disabled: data.page >= pages, onclick: () => goTo(data.page + 1)},
      'Next'));
}

export function debounce(fn, ms = 250) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
