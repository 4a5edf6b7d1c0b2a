// The audit log (administrators). Filled in once the audit API is settled.
import {h, pageHeading} from '../dom.js';

export async function render(main) {
  main.append(pageHeading('Audit log'), h('p', {}, 'Not available yet.'));
}
