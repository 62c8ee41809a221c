// A flow run: its DAG with step states, a timeline of attempts, and the selected step's
// details. Live: step transitions re-read the graph (debounced) and the attempts.

import { get, post, follow } from './api.js';
import { h, fill, badge, fmtTime, fmtDuration, debounce, errorBox } from './dom.js';
import { DagView, STATE_COLORS, fanCount } from './dag.js';
import { Timeline } from './timeline.js';

/** Attempts read for the timeline, at most (pages of 10,000). */
const MAX_ATTEMPTS = 100000;

async function allAttempts(id, signal) {
  const out = [];
  let after = null;
  while (out.length < MAX_ATTEMPTS) {
    const page = await get(`/flows/runs/${id}/attempts?limit=10000${after ? `&after=${after}` : ''}`, signal);
    out.push(...page.attempts);
    if (!page.next_after) break;
    after = page.next_after;
  }
  return out;
}

function legend() {
  return h('div', { class: 'legend' }, Object.entries(STATE_COLORS).map(([s, c]) => {
    const sw = h('span', { class: 'swatch' });
    sw.style.background = c;
    return h('span', {}, sw, s.replace('_', ' '));
  }));
}

export async function runPage(view, [id], ctx) {
  const t0 = performance.now();
  let graph = await get(`/flows/runs/${id}/graph`, ctx.signal);
  const head = h('div', { id: 'run-head' });
  const canvas = h('canvas', { id: 'dag', class: 'dag', 'aria-label': 'Flow graph' });
  const search = h('input', { id: 'step-search', placeholder: 'find a step', 'aria-label': 'Find a step' });
  const fitBtn = h('button', { type: 'button', id: 'fit' }, 'Fit');
  const panel = h('aside', { id: 'step-panel', class: 'panel' }, h('p', { class: 'muted' }, 'Click a step to see it here.'));
  const tlCanvas = h('canvas', { id: 'timeline', class: 'timeline', 'aria-label': 'Timeline of attempts' });
  fill(view, head,
    h('div', { class: 'toolbar' }, search, fitBtn, legend()),
    h('div', { class: 'run-body' }, canvas, panel),
    h('h2', {}, 'Timeline'),
    h('p', { class: 'muted' }, 'One row per step (fan-out: per instance), one bar per attempt. Wheel scrolls, ctrl+wheel zooms, drag pans.'),
    tlCanvas);

  let selected = null;
  let attempts = [];
  const showStep = (st) => {
    selected = st.name;
    const i = dag.index.get(st.name);
    const deps = st.depends.map((d) => graph.steps[d].name);
    const dependents = dag.lay.children[i].map((c) => graph.steps[c].name);
    const link = (n) => h('a', { href: '#', class: 'step-link', onclick: (e) => { e.preventDefault(); dag.focus(dag.index.get(n)); } }, n);
    const approve = st.state === 'waiting_approval'
      ? h('button', { type: 'button', id: 'approve' }, 'Approve') : null;
    if (approve) {
      approve.addEventListener('click', async () => {
        try { await post(`/flows/runs/${id}/steps/${encodeURIComponent(st.name)}/approve`); refresh(); } catch (e) { panel.appendChild(errorBox(e)); }
      });
    }
    const mine = attempts.filter((a) => a.step === i);
    const counts = Object.entries(st.instances || {});
    fill(panel,
      h('h2', { id: 'step-name' }, st.name), badge(st.state),
      st.approval ? h('p', {}, 'Approval step.') : null,
      st.reason ? h('p', { class: 'reason' }, st.reason) : null,
      approve,
      h('dl', { class: 'facts' },
        h('dt', {}, 'Attempts'), h('dd', {}, String(st.attempts)),
        st.fan_out ? [h('dt', {}, 'Instances'), h('dd', {}, fanCount(st) || '0', counts.length ? ` (${counts.map(([k, v]) => `${k} ${v}`).join(', ')})` : '')] : null,
        st.job ? [h('dt', {}, st.fan_out ? 'First job' : 'Job'), h('dd', {}, h('a', { href: `#/jobs/${st.job}`, id: 'step-job' }, `job ${st.job}`))] : null,
        mine.length ? [h('dt', {}, 'Ran'), h('dd', {}, fmtDuration(Math.max(...mine.map((a) => (a.finished_at || Date.now()))) - Math.min(...mine.map((a) => a.started_at))))] : null,
        h('dt', {}, 'Depends on'), h('dd', {}, deps.length ? deps.slice(0, 50).map((n, k) => [k ? ', ' : '', link(n)]) : '—', deps.length > 50 ? ` and ${deps.length - 50} more` : ''),
        h('dt', {}, 'Needed by'), h('dd', {}, dependents.length ? dependents.slice(0, 50).map((n, k) => [k ? ', ' : '', link(n)]) : '—', dependents.length > 50 ? ` and ${dependents.length - 50} more` : '')));
  };
  const dag = new DagView(canvas, graph.steps, {
    onSelect: showStep,
    onOpen: (st) => { if (st.job) location.hash = `#/jobs/${st.job}`; },
  });
  window.zenithDag = dag;
  const timeline = new Timeline(tlCanvas, {
    onSelect: (row) => {
      dag.focus(row.step);
      if (row.job) panel.appendChild(h('p', {}, 'Instance ', String(row.instance), ': ', h('a', { href: `#/jobs/${row.job}` }, `job ${row.job}`)));
    },
  });
  ctx.signal.addEventListener('abort', () => { dag.destroy(); timeline.destroy(); if (window.zenithDag === dag) window.zenithDag = null; });
  search.addEventListener('keydown', (e) => {
    if (e.key !== 'Enter') return;
    const q = search.value.trim();
    if (!q) return;
    let i = dag.index.get(q);
    if (i === undefined) i = graph.steps.findIndex((s) => s.name.includes(q));
    if (i >= 0) dag.focus(i); else search.setCustomValidity('no such step');
    search.reportValidity();
    search.setCustomValidity('');
  });
  fitBtn.addEventListener('click', () => dag.fit());

  const renderHead = () => {
    const r = graph.run;
    const liveRun = r.state === 'running' || r.state === 'pending';
    const cancel = liveRun ? h('button', { type: 'button', id: 'cancel-run', class: 'danger' }, 'Cancel run') : null;
    if (cancel) {
      cancel.addEventListener('click', async () => {
        if (!confirm(`Cancel run ${id}?`)) return;
        try { await post(`/flows/runs/${id}/cancel`); } catch (e) { head.appendChild(errorBox(e)); }
      });
    }
    const byState = {};
    for (const s of graph.steps) byState[s.state] = (byState[s.state] || 0) + 1;
    fill(head,
      h('div', { class: 'title' }, h('h1', {}, `Run ${r.id}: ${r.name}`), badge(r.state), cancel),
      r.reason ? h('p', { class: 'reason' }, r.reason) : null,
      h('p', { class: 'muted', id: 'run-facts' },
        `${graph.steps.length} steps (${Object.entries(byState).map(([k, v]) => `${k.replace('_', ' ')} ${v}`).join(', ')}) · `,
        `${r.trigger} · started ${fmtTime(r.created_at)}`,
        r.finished_at ? ` · took ${fmtDuration(r.finished_at - r.created_at)}` : ''));
  };
  const loadTimeline = async () => {
    attempts = await allAttempts(id, ctx.signal);
    timeline.setAttempts(attempts, graph.steps, Date.now());
  };
  renderHead();
  view.dataset.ready = 'run';
  canvas.dataset.steps = String(graph.steps.length);
  canvas.dataset.loadMs = String(Math.round(performance.now() - t0));
  await loadTimeline();
  tlCanvas.dataset.loadMs = String(Math.round(performance.now() - t0));

  const refresh = debounce(async () => {
    try {
      graph = await get(`/flows/runs/${id}/graph`, ctx.signal);
      dag.setSteps(graph.steps);
      renderHead();
      if (selected !== null && dag.index.has(selected)) showStep(graph.steps[dag.index.get(selected)]);
      await loadTimeline();
    } catch (_) { /* keep the last view; the stream reconnects */ }
  }, graph.steps.length > 2000 ? 1500 : 400);
  follow(`run=${id}`, refresh, ctx.signal, ctx.setLive);
  // Running bars grow with the clock.
  const tick = setInterval(() => {
    if (ctx.signal.aborted) { clearInterval(tick); return; }
    if (graph.run.state === 'running') { timeline.now = Date.now(); timeline.t1 = Math.max(timeline.t1, timeline.now); timeline.draw(); }
  }, 1000);
}
