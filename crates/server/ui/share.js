// Fair share: each namespace the token reads, its users indented under it, with weight,
// what they hold now, their share against the target their weight gives, recent usage and
// quota (`GET /api/v1/share`, docs/tenancy.md). Re-read on attempt events (or polling).

import { get, follow } from './api.js';
import { h, fill, fmtBytes, meter, debounce, errorBox, table } from './dom.js';

const pct = (v) => `${(v * 100).toFixed(1)}%`;

function quotaText(q) {
  if (!q) return '';
  const parts = [];
  if (q.cpus != null) parts.push(`cpus ${q.cpus}`);
  if (q.memory != null) parts.push(`memory ${fmtBytes(q.memory)}`);
  for (const k of ['gpus', 'running', 'jobs', 'tasks']) if (q[k] != null) parts.push(`${k} ${q[k]}`);
  return parts.join(', ');
}

function row(p, quota, user) {
  return h('tr', { class: user ? 'user' : 'namespace', dataset: { party: p.name } },
    h('td', { class: user ? 'indent' : 'name' }, user ? (p.name || '(none)') : p.name),
    h('td', { class: 'num' }, String(p.weight)),
    h('td', { class: 'num' }, String(p.running)),
    h('td', { class: 'num' }, (p.cpu_millis / 1000).toString()),
    h('td', { class: 'num' }, fmtBytes(p.memory)),
    h('td', { class: 'num' }, p.gpus ? String(p.gpus) : ''),
    h('td', { class: 'num' }, String(p.live_jobs)),
    h('td', {}, meter(p.share, 1), ` ${pct(p.share)}`),
    h('td', { class: 'num' }, p.target == null ? '' : pct(p.target)),
    h('td', { class: 'num' }, pct(p.usage)),
    h('td', {}, quota));
}

export async function sharePage(view, _params, ctx) {
  const body = h('div', { id: 'share-table' });
  const note = h('p', { class: 'muted' });
  fill(view, h('h1', {}, 'Fair share'), note, body);
  const load = async () => {
    const s = await get('/share', ctx.signal);
    const hours = s.half_life_ms / 3600000;
    fill(note, `Each placement goes to the namespace, then the user, with the lowest (share + usage) / weight; usage decays with a ${hours >= 1 ? `${hours}h` : `${s.half_life_ms / 1000}s`} half-life.`);
    const rows = [];
    for (const ns of s.namespaces) {
      rows.push(row(ns, quotaText(ns.quota), false));
      for (const u of ns.users) rows.push(row(u, '', true));
    }
    fill(body, rows.length
      ? table(['Namespace / user', 'Weight', 'Running', 'CPUs', 'Memory', 'GPUs', 'Jobs', 'Share', 'Target', 'Usage', 'Quota'], rows, { class: 'share' })
      : h('p', { class: 'muted' }, 'No namespace has work or settings yet.'));
    view.dataset.ready = 'share';
  };
  await load();
  const again = debounce(() => load().catch((e) => fill(body, errorBox(e))), 1000);
  follow('kind=attempt', again, ctx.signal, ctx.setLive);
  // Usage decays without events.
  const tick = setInterval(() => { if (ctx.signal.aborted) clearInterval(tick); else again(); }, 5000);
}
