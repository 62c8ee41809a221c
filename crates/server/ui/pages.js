// Overview, jobs table, flows and runs, nodes. Tables are paged on the server (ID cursors);
// live events trigger a debounced re-read of what is on screen, never a full reload.

import { get, follow } from './api.js';
import { h, fill, badge, fmtTime, fmtDuration, fmtAge, fmtBytes, meter, debounce, errorBox, table } from './dom.js';

const JOB_STATES = ['', 'queued', 'running', 'succeeded', 'failed', 'cancelled'];
const PAGE = 50;

function live(ctx, query, onEvent) {
  follow(query, onEvent, ctx.signal, ctx.setLive);
}

function jobRow(j) {
  const done = j.tasks.succeeded + j.tasks.failed + j.tasks.cancelled;
  return h('tr', { dataset: { job: j.id } },
    h('td', {}, h('a', { href: `#/jobs/${j.id}` }, String(j.id))),
    h('td', { class: 'name' }, j.name),
    h('td', {}, badge(j.state)),
    h('td', {}, j.namespace || 'default'),
    h('td', {}, j.queue),
    h('td', { class: 'num' }, String(j.priority)),
    h('td', { class: 'num' }, j.task_count > 1 ? `${done}/${j.task_count}` : ''),
    h('td', {}, fmtTime(j.created_at)),
    h('td', {}, j.finished_at ? fmtDuration(j.finished_at - j.created_at) : ''),
    h('td', { class: 'reason' }, j.reason || ''));
}

const JOB_HEADERS = ['ID', 'Name', 'State', 'Namespace', 'Queue', 'Priority', 'Tasks', 'Submitted', 'Took', 'Reason'];

function runRow(r) {
  return h('tr', { dataset: { run: r.id } },
    h('td', {}, h('a', { href: `#/runs/${r.id}` }, String(r.id))),
    h('td', { class: 'name' }, r.name),
    h('td', {}, badge(r.state)),
    h('td', {}, r.trigger),
    h('td', {}, fmtTime(r.created_at)),
    h('td', {}, r.finished_at ? fmtDuration(r.finished_at - r.created_at) : ''),
    h('td', { class: 'reason' }, r.reason || ''));
}

const RUN_HEADERS = ['ID', 'Flow', 'State', 'Trigger', 'Started', 'Took', 'Reason'];

function card(label, value, extra) {
  return h('div', { class: 'card' }, h('div', { class: 'card-label' }, label),
    h('div', { class: 'card-value' }, value), extra || null);
}

export async function overviewPage(view, _params, ctx) {
  const cards = h('div', { class: 'cards', id: 'cards' });
  const queues = h('div', { id: 'queues' });
  const jobs = h('div', { id: 'recent-jobs' });
  const runs = h('div', { id: 'recent-runs' });
  fill(view, h('h1', {}, 'Cluster'), cards,
    h('div', { class: 'two' },
      h('section', {}, h('h2', {}, 'Queues'), queues),
      h('section', {}, h('h2', {}, 'Recent flow runs'), runs)),
    h('section', {}, h('h2', {}, 'Recent jobs'), jobs));
  const load = async () => {
    const [s, jl, rl] = await Promise.all([
      get('/summary', ctx.signal),
      get(`/jobs?limit=10`, ctx.signal),
      // Runs of every namespace the token reads.
      get('/flows/runs?limit=10&namespace=*', ctx.signal),
    ]);
    const cpuUsed = s.cpus_total - s.cpus_free;
    const memUsed = s.memory_total - s.memory_free;
    const queued = s.queues.reduce((a, q) => a + q.queued, 0);
    fill(cards,
      card('Nodes ready', String(s.nodes_ready), s.nodes_lost ? h('div', { class: 'warn' }, `${s.nodes_lost} lost`) : null),
      card('CPU in use', `${cpuUsed.toFixed(1)} / ${s.cpus_total.toFixed(1)}`, meter(cpuUsed, s.cpus_total)),
      card('Memory in use', `${fmtBytes(memUsed)} / ${fmtBytes(s.memory_total)}`, meter(memUsed, s.memory_total)),
      card('Queued jobs', String(queued)),
      card('Running attempts', String(s.running_attempts)),
      card('Live flow runs', String(s.runs_live), h('div', { class: 'muted' }, `${s.flows_applied} flows applied`)));
    fill(queues, s.queues.length
      ? table(['Queue', 'Queued', 'Running'], s.queues.map((q) => h('tr', {},
        h('td', {}, h('a', { href: `#/jobs?queue=${encodeURIComponent(q.queue)}` }, q.queue)),
        h('td', { class: 'num' }, String(q.queued)), h('td', { class: 'num' }, String(q.running)))))
      : h('p', { class: 'muted' }, 'No live jobs.'));
    fill(jobs, jl.jobs.length ? table(JOB_HEADERS, jl.jobs.map(jobRow)) : h('p', { class: 'muted' }, 'No jobs yet. Try: zenith submit -- echo hello'));
    fill(runs, rl.length ? table(RUN_HEADERS, rl.map(runRow)) : h('p', { class: 'muted' }, 'No flow runs yet.'));
    view.dataset.ready = 'overview';
  };
  await load();
  const again = debounce(() => load().catch(() => {}), 1000);
  live(ctx, '', again);
}

export async function jobsPage(view, _params, ctx) {
  const q = ctx.query;
  const state = q.get('state') || '';
  const queue = q.get('queue') || '';
  const namespace = q.get('namespace') || '';
  const before = q.get('before') || '';
  const stateSel = h('select', { id: 'filter-state', name: 'state', 'aria-label': 'State' },
    JOB_STATES.map((s) => h('option', { value: s, selected: s === state }, s || 'any state')));
  const queueIn = h('input', { id: 'filter-queue', name: 'queue', placeholder: 'queue', value: queue, 'aria-label': 'Queue' });
  const nsIn = h('input', {
    id: 'filter-namespace', name: 'namespace', placeholder: 'namespace (* for all)', value: namespace, 'aria-label': 'Namespace',
  });
  const form = h('form', { class: 'filters', id: 'jobs-filter' }, stateSel, nsIn, queueIn, h('button', { type: 'submit' }, 'Filter'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    if (nsIn.value.trim()) p.set('namespace', nsIn.value.trim());
    if (stateSel.value) p.set('state', stateSel.value);
    if (queueIn.value.trim()) p.set('queue', queueIn.value.trim());
    location.hash = `#/jobs${p.toString() ? `?${p}` : ''}`;
  });
  stateSel.addEventListener('change', () => form.requestSubmit());
  const body = h('div', { id: 'jobs-table' });
  const pager = h('div', { class: 'pager' });
  fill(view, h('h1', {}, 'Jobs'), form, body, pager);
  const base = new URLSearchParams();
  if (state) base.set('state', state);
  if (queue) base.set('queue', queue);
  if (namespace) base.set('namespace', namespace);
  const load = async () => {
    const p = new URLSearchParams(base);
    p.set('limit', String(PAGE));
    if (before) p.set('before', before);
    const list = await get(`/jobs?${p}`, ctx.signal);
    fill(body, list.jobs.length ? table(JOB_HEADERS, list.jobs.map(jobRow), { class: 'jobs' })
      : h('p', { class: 'muted' }, 'No jobs match.'));
    const links = [];
    if (before) links.push(h('a', { href: `#/jobs${base.toString() ? `?${base}` : ''}`, id: 'page-newest' }, '« Newest'));
    if (list.next_before) {
      const n = new URLSearchParams(base);
      n.set('before', String(list.next_before));
      links.push(h('a', { href: `#/jobs?${n}`, id: 'page-older' }, 'Older »'));
    }
    fill(pager, links);
    view.dataset.ready = 'jobs';
  };
  await load();
  // Only the first page changes as jobs arrive; older pages change in state only.
  const again = debounce(() => load().catch(() => {}), before ? 2000 : 700);
  live(ctx, 'kind=job', again);
}

export async function runsPage(view, _params, ctx) {
  const name = ctx.query.get('flow') || '';
  const before = ctx.query.get('before') || '';
  const flows = h('div', { id: 'flows' });
  const runs = h('div', { id: 'runs-table' });
  const pager = h('div', { class: 'pager' });
  fill(view, h('h1', {}, 'Flows'), flows,
    h('h2', {}, name ? `Runs of ${name}` : 'Runs'), runs, pager);
  const load = async () => {
    // Every namespace the token reads; a flow outside `default` is named `namespace/name`.
    const p = new URLSearchParams({ limit: String(PAGE), namespace: '*' });
    if (name) p.set('name', name);
    if (before) p.set('before', before);
    const [fl, rl] = await Promise.all([get('/flows?namespace=*', ctx.signal), get(`/flows/runs?${p}`, ctx.signal)]);
    fill(flows, fl.flows.length
      ? table(['Flow', 'Steps', 'Schedule', 'Next run', 'Updated'], fl.flows.map((f) => h('tr', {},
        h('td', {}, h('a', { href: `#/runs?flow=${encodeURIComponent(f.name)}` }, f.name)),
        h('td', { class: 'num' }, String(f.steps)),
        h('td', {}, f.schedule ? `${f.schedule}${f.timezone ? ` (${f.timezone})` : ''}` : ''),
        h('td', {}, f.next_fire ? fmtTime(f.next_fire) : ''),
        h('td', {}, fmtTime(f.updated_at)))))
      : h('p', { class: 'muted' }, 'No applied flows (zenith flow apply FILE).'));
    fill(runs, rl.length ? table(RUN_HEADERS, rl.map(runRow), { class: 'runs' }) : h('p', { class: 'muted' }, 'No runs.'));
    const links = [];
    const base = new URLSearchParams();
    if (name) base.set('flow', name);
    if (before) links.push(h('a', { href: `#/runs${base.toString() ? `?${base}` : ''}` }, '« Newest'));
    if (rl.length === PAGE) {
      const n = new URLSearchParams(base);
      n.set('before', String(rl[rl.length - 1].id));
      links.push(h('a', { href: `#/runs?${n}` }, 'Older »'));
    }
    fill(pager, links);
    view.dataset.ready = 'runs';
  };
  await load();
  live(ctx, 'kind=run', debounce(() => load().catch(() => {}), 700));
}

export async function nodesPage(view, _params, ctx) {
  const body = h('div', { id: 'nodes-table' });
  fill(view, h('h1', {}, 'Nodes'), body);
  const load = async () => {
    const list = await get('/nodes', ctx.signal);
    const now = Date.now();
    const rows = list.nodes.map((n) => {
      const cpuUsed = n.resources.cpus - n.free.cpus;
      const memUsed = n.resources.memory - n.free.memory;
      const labels = Object.entries(n.labels || {}).map(([k, v]) => h('span', { class: 'label' }, `${k}=${v}`));
      return h('tr', { dataset: { node: n.id } },
        h('td', { class: 'name' }, n.name),
        h('td', {}, badge(n.state === 'ready' && n.schedule && n.schedule !== 'open' ? n.schedule : n.state)),
        h('td', {}, meter(cpuUsed, n.resources.cpus), ` ${cpuUsed.toFixed(1)} / ${n.resources.cpus}`),
        h('td', {}, meter(memUsed, n.resources.memory), ` ${fmtBytes(memUsed)} / ${fmtBytes(n.resources.memory)}`),
        h('td', { class: 'num' }, n.resources.gpus ? `${n.resources.gpus - (n.free.gpus || 0)} / ${n.resources.gpus}` : ''),
        h('td', { class: 'num' }, n.queued ? `${n.running} +${n.queued} queued` : String(n.running)),
        h('td', {}, labels),
        h('td', {}, fmtAge(n.last_heartbeat, now)),
        h('td', { class: 'muted mono' }, n.id));
    });
    fill(body, rows.length
      ? table(['Name', 'State', 'CPU', 'Memory', 'GPUs', 'Running', 'Labels', 'Heartbeat', 'ID'], rows, { class: 'nodes' })
      : h('p', { class: 'muted' }, 'No agents have registered. Start one: zenith agent --server URL --token TOKEN'));
    view.dataset.ready = 'nodes';
  };
  await load();
  const again = debounce(() => load().catch((e) => fill(body, errorBox(e))), 1000);
  live(ctx, 'kind=node,attempt', again);
  // Heartbeat ages move without events.
  const tick = setInterval(() => { if (ctx.signal.aborted) clearInterval(tick); else again(); }, 5000);
}
