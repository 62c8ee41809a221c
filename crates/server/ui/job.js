// One job: summary, spec, attempts, why it waits (explain), and its output, followed live.

import { get, post, del, stream, follow } from './api.js';
import { h, fill, badge, fmtTime, fmtDuration, debounce, errorBox, table } from './dom.js';

/** Most log text kept on the page; older text is dropped from the top. */
const LOG_KEEP = 2 * 1024 * 1024;

function argv(cmd) {
  return cmd.map((a) => (/^[A-Za-z0-9_./:=,@%+-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`)).join(' ');
}

function dl(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

function logPanel(id, job, ctx, isLive) {
  // The array is written START-END[:STEP][%MAX]: its first task is START.
  const first = job.spec.array ? parseInt(String(job.spec.array), 10) || 0 : 0;
  const taskIn = h('input', { id: 'log-task', type: 'number', min: first, value: first, 'aria-label': 'Task', class: 'narrow' });
  const streamSel = h('select', { id: 'log-stream', 'aria-label': 'Stream' },
    h('option', { value: 'stdout' }, 'stdout'), h('option', { value: 'stderr' }, 'stderr'));
  const pre = h('pre', { id: 'log', class: 'log', tabindex: 0 });
  const note = h('span', { class: 'muted', id: 'log-status' });
  let ctl = null;
  let following = false;
  let seen = job.attempts_total;
  const open = () => {
    following = true;
    if (ctl) ctl.abort();
    ctl = new AbortController();
    ctx.signal.addEventListener('abort', () => ctl.abort());
    pre.textContent = '';
    const live = isLive();
    note.textContent = live ? 'following…' : '';
    const p = new URLSearchParams({ task: taskIn.value, stream: streamSel.value });
    if (live) p.set('follow', 'true');
    let text = '';
    const flush = debounce(() => { pre.textContent = text; pre.scrollTop = pre.scrollHeight; }, 100);
    stream(`/jobs/${id}/logs?${p}`, (chunk) => {
      text += chunk;
      if (text.length > LOG_KEEP) text = text.slice(text.length - LOG_KEEP);
      flush();
    }, ctl.signal).then(() => {
      following = false;
      pre.textContent = text;
      note.textContent = text ? '' : '(no output)';
      pre.dataset.done = 'true';
    }).catch((e) => { following = false; if (e.name !== 'AbortError') note.textContent = e.message; });
  };
  taskIn.addEventListener('change', open);
  streamSel.addEventListener('change', open);
  open();
  return {
    el: h('section', {}, h('h2', {}, 'Output'),
      h('div', { class: 'filters' }, job.task_count > 1 ? [h('label', {}, 'Task '), taskIn] : null, streamSel, note), pre),
    // Following ends with an attempt; when a retry starts another, show that one.
    update(j) {
      if (j.attempts_total !== seen && !following) open();
      seen = j.attempts_total;
    },
  };
}

export async function jobPage(view, [id], ctx) {
  const head = h('div', { id: 'job-head' });
  const attempts = h('div', { id: 'attempts' });
  const explain = h('div', { id: 'explain' });
  let job = await get(`/jobs/${id}`, ctx.signal);
  const logs = logPanel(id, job, ctx, () => job.state === 'queued' || job.state === 'running');
  fill(view, head, explain, h('section', {}, h('h2', {}, 'Attempts'), attempts), logs.el);
  const render = async () => {
    const liveJob = job.state === 'queued' || job.state === 'running';
    const cancel = liveJob ? h('button', { id: 'cancel', type: 'button', class: 'danger' }, 'Cancel') : null;
    if (cancel) {
      cancel.addEventListener('click', async () => {
        if (!confirm(`Cancel job ${id}?`)) return;
        try { await post(`/jobs/${id}/cancel`); } catch (e) { head.appendChild(errorBox(e)); }
      });
    }
    const s = job.spec;
    const t = job.tasks;
    // Hold keeps queued tasks from starting; release lets them go (live jobs only).
    const holdBtn = liveJob ? h('button', { id: 'hold', type: 'button' }, s.hold ? 'Release' : 'Hold') : null;
    if (holdBtn) {
      holdBtn.addEventListener('click', async () => {
        try {
          await post(`/jobs/${id}/${s.hold ? 'release' : 'hold'}`);
          job = await get(`/jobs/${id}`, ctx.signal);
          await render();
        } catch (e) { head.appendChild(errorBox(e)); }
      });
    }
    // An ended job runs again (its failed tasks, or all of a succeeded one), or goes.
    const requeueBtn = liveJob ? null : h('button', { id: 'requeue', type: 'button' },
      job.state === 'succeeded' ? 'Run again' : 'Requeue failed');
    const deleteBtn = liveJob ? null : h('button', { id: 'delete', type: 'button', class: 'danger' }, 'Delete');
    if (requeueBtn) {
      requeueBtn.addEventListener('click', async () => {
        try {
          await post(`/jobs/${id}/requeue`, job.state === 'succeeded' ? { all: true } : {});
          job = await get(`/jobs/${id}`, ctx.signal);
          await render();
        } catch (e) { head.appendChild(errorBox(e)); }
      });
      deleteBtn.addEventListener('click', async () => {
        if (!confirm(`Delete job ${id} with its attempts and logs?`)) return;
        try {
          await del(`/jobs/${id}`);
          location.hash = '#/jobs';
        } catch (e) { head.appendChild(errorBox(e)); }
      });
    }
    fill(head,
      h('div', { class: 'title' }, h('h1', {}, `Job ${id}: ${job.name}`), badge(job.state),
        s.hold ? badge('held') : null, holdBtn, cancel, requeueBtn, deleteBtn),
      job.reason ? h('p', { class: 'reason' }, job.reason) : null,
      dl([
        ['Command', h('code', {}, argv(s.command))],
        ['Queue', job.queue], ['Priority', String(job.priority)],
        ['After', (s.after || []).join(', ')],
        ['Gang', s.gang ? `${s.gang.nodes} nodes × ${s.gang.tasksPerNode} task${s.gang.tasksPerNode === 1 ? '' : 's'}, started together` : ''],
        ['Tasks', job.task_count > 1 ? `${job.task_count} (queued ${t.queued}, running ${t.running}, succeeded ${t.succeeded}, failed ${t.failed}, cancelled ${t.cancelled})` : '1'],
        ['Resources', `${s.resources.cpus} CPU, ${s.resources.memory ? `${Math.round(s.resources.memory / 1048576)} MiB` : 'no memory reserved'}${s.resources.gpus ? `, ${s.resources.gpus} GPU` : ''}`],
        ['Submitted', fmtTime(job.created_at)],
        ['Finished', job.finished_at ? `${fmtTime(job.finished_at)} (${fmtDuration(job.finished_at - job.created_at)})` : ''],
        ['Retries', s.retry && s.retry.attempts ? `${s.retry.attempts}` : ''],
        ['Working dir', s.cwd || ''],
      ]),
      h('details', {}, h('summary', {}, 'Spec as JSON'), h('pre', { class: 'json' }, JSON.stringify(s, null, 2))));
    fill(attempts, job.attempts.length
      ? [table(['Attempt', 'Task', 'Node', 'Started', 'Ran', 'State', 'Exit', 'Reason'], job.attempts.map((a) => h('tr', {},
        h('td', {}, String(a.id)), h('td', { class: 'num' }, String(a.task)),
        h('td', { class: 'mono' }, a.node), h('td', {}, fmtTime(a.started_at)),
        h('td', {}, fmtDuration((a.finished_at || Date.now()) - a.started_at)),
        h('td', {}, badge(a.state)), h('td', { class: 'num' }, a.exit_code ?? (a.signal ? `signal ${a.signal}` : '')),
        h('td', { class: 'reason' }, a.reason || ''))), { class: 'attempts' }),
      job.attempts_total > job.attempts.length ? h('p', { class: 'muted' }, `${job.attempts.length} of ${job.attempts_total} attempts shown`) : null]
      : h('p', { class: 'muted' }, 'No attempts yet.'));
    if (job.state === 'queued') {
      try {
        const x = await get(`/jobs/${id}/explain`, ctx.signal);
        const rej = Object.entries(x.rejections || {});
        fill(explain, h('section', { class: 'explain' }, h('h2', {}, 'Why it is waiting'), h('p', {}, x.message),
          h('p', { class: 'muted' }, `${x.feasible} of ${x.nodes} nodes could run it`),
          rej.length ? table(['Reason', 'Nodes'], rej.map(([k, v]) => h('tr', {}, h('td', {}, k), h('td', { class: 'num' }, String(v))))) : null));
      } catch (e) { fill(explain, errorBox(e)); }
    } else {
      fill(explain);
    }
    view.dataset.ready = 'job';
  };
  await render();
  const again = debounce(async () => {
    try {
      job = await get(`/jobs/${id}`, ctx.signal);
      await render();
      logs.update(job);
    } catch (_) { /* keep the last view; the stream reconnects */ }
  }, 300);
  follow(`job=${id}`, again, ctx.signal, ctx.setLive);
}
