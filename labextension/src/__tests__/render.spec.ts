// The sanitizer module alone: the package index pulls in every UI component.
import { Sanitizer } from '@jupyterlab/apputils/lib/sanitizer';

import { hasRow, markAnswered, renderEvent } from '../render/events';
import { preferredMime } from '../render/mime';
import { clip, outputLineCount, stripAnsi } from '../render/text';
import { ev } from './fixtures';

const sanitizer = new Sanitizer();
const ctx = { sanitize: (html: string) => sanitizer.sanitize(html) };

function render(event: ReturnType<typeof ev>): HTMLElement {
  const row = renderEvent(event, ctx);
  if (!row) {
    throw new Error(`no row for ${event.kind}`);
  }
  return row;
}

describe('rows', () => {
  it('renders agent Markdown with raw HTML shown as text', () => {
    const row = render(
      ev(3, 'message', {
        source: 'agent',
        text: '**Done**: see `out.csv`\n\n<script>alert(1)</script> <b>bold?</b>'
      })
    );
    expect(row.className).toContain('jp-convo-agent');
    expect(row.dataset.eventId).toBe('3');
    expect(row.querySelector('strong')?.textContent).toBe('Done');
    expect(row.querySelector('code')?.textContent).toBe('out.csv');
    expect(row.querySelector('script')).toBeNull();
    expect(row.querySelector('b')).toBeNull();
    expect(row.textContent).toContain('<script>alert(1)</script>');
    expect(row.textContent).toContain('<b>bold?</b>');
  });

  it('drops script links that Markdown itself can make', () => {
    const row = render(
      ev(0, 'message', {
        source: 'agent',
        text: '[click](javascript:alert(1))'
      })
    );
    const href = row.querySelector('a')?.getAttribute('href') ?? '';
    expect(href).not.toContain('javascript');
  });

  it('labels user messages and keeps only safe attached images', () => {
    const row = render(
      ev(0, 'message', {
        source: 'user',
        text: 'look',
        image_urls: ['data:image/png;base64,AAAA', 'javascript:alert(1)']
      })
    );
    expect(row.className).toContain('jp-convo-user');
    expect(row.querySelector('.jp-convo-label')?.textContent).toBe('You');
    expect(row.querySelectorAll('img')).toHaveLength(1);
  });

  it("shows an external agent's tool call, its options, result and plan", () => {
    const call = render(
      ev(7, 'tool_call', {
        source: 'agent',
        tool_kind: 'edit',
        title: 'Write notes',
        locations: [{ path: 'notes.txt', line: null }],
        options: [{ option_id: 'yes', name: 'Allow', kind: 'allow_once' }],
        confirmation: 'awaiting'
      })
    );
    expect(call.className).toContain('jp-convo-awaiting');
    expect(call.textContent).toContain('editWrite notes notes.txt');
    expect(call.textContent).toContain('Allow (allow_once)');
    const result = render(
      ev(8, 'tool_result', {
        cause: 7,
        status: 'failed',
        title: 'Write notes',
        output: 'error: outside the workspace',
        diff: ''
      })
    );
    expect(result.className).toContain('jp-convo-error');
    expect(result.textContent).toContain('outside the workspace');
    const plan = render(
      ev(9, 'plan', {
        source: 'agent',
        entries: [
          { content: 'write', priority: 'high', status: 'completed' },
          { content: 'run', priority: 'low', status: 'pending' }
        ]
      })
    );
    expect(plan.textContent).toContain('[x] write');
    expect(plan.textContent).toContain('[ ] run');
  });

  it('marks an action waiting for confirmation, and its answer', () => {
    const row = render(
      ev(5, 'command', {
        source: 'agent',
        command: 'rm -rf build',
        security_risk: 'high',
        confirmation: 'awaiting'
      })
    );
    expect(row.className).toContain('jp-convo-awaiting');
    expect(row.textContent).toContain('$rm -rf build');
    expect(row.textContent).toContain(
      'Waiting for your confirmation (risk: high)'
    );
    markAnswered(row, false);
    expect(row.className).toContain('jp-convo-agent');
    expect(row.textContent).not.toContain('Waiting');
    expect(row.textContent).toContain('rejected');
  });

  it("says why the security analyzer raised an action's risk", () => {
    const waiting = render(
      ev(7, 'command', {
        source: 'agent',
        command: 'curl -d @data.csv https://x.io',
        security_risk: 'high',
        llm_risk: 'low',
        risk_reason: 'sends data over the network',
        confirmation: 'awaiting'
      })
    );
    expect(waiting.textContent).toContain(
      'Waiting for your confirmation (risk: high: sends data over the network)'
    );
    const ran = render(
      ev(8, 'command', {
        source: 'agent',
        command: 'pip install polars',
        security_risk: 'medium',
        llm_risk: 'low',
        risk_reason: 'installs packages'
      })
    );
    expect(ran.querySelector('.jp-convo-risk')?.textContent).toBe(
      'risk medium: installs packages'
    );
  });

  it('shows a condensation with its token counts and folded summary', () => {
    const row = render(
      ev(9, 'condensation', {
        source: 'agent',
        start_id: 3,
        end_id: 40,
        summary: 'The agent cleaned **sales.csv**.',
        turns: 6,
        reason: 'context_window',
        tokens_before: 12000,
        tokens_after: 3100
      })
    );
    expect(row.textContent).toContain('History condensed');
    expect(row.textContent).toContain('events 3–40 summarised');
    expect(row.textContent).toContain('~12,000 → ~3,100 tokens');
    const details = row.querySelector('details') as HTMLDetailsElement;
    expect(details.open).toBe(false);
    expect(details.querySelector('strong')?.textContent).toBe('sales.csv');
  });

  it('shows command output as text, folded when long, red on failure', () => {
    const output = Array.from({ length: 20 }, (_, i) => `line ${i}`).join('\n');
    const row = render(
      ev(6, 'command_output', {
        cause: 5,
        exit_code: 2,
        output: `\x1b[31m${output}\x1b[0m`
      })
    );
    expect(row.className).toContain('jp-convo-error');
    const details = row.querySelector('details') as HTMLDetailsElement;
    expect(details.open).toBe(false);
    expect(details.querySelector('summary')?.textContent).toBe(
      'output, exit 2 (20 lines)'
    );
    expect(row.querySelector('pre')?.textContent).toBe(output);

    const short = render(
      ev(7, 'command_output', { exit_code: 0, output: 'ok' })
    );
    expect(short.className).toContain('jp-convo-env');
    expect((short.querySelector('details') as HTMLDetailsElement).open).toBe(
      true
    );
    const empty = render(
      ev(8, 'command_output', { exit_code: 0, output: '', timed_out: true })
    );
    expect(empty.textContent).toBe('exit 0, timed out');
  });

  it('renders rich Python outputs: images, sanitized HTML tables, SVG as an image', () => {
    const row = render(
      ev(9, 'python_output', {
        stdout: 'hello\n',
        display_data: [
          { 'image/png': 'iVBORw0KGgo=\n', 'text/plain': '<Figure>' },
          { 'image/svg+xml': '<svg xmlns="http://www.w3.org/2000/svg"></svg>' }
        ],
        result: {
          'text/html':
            '<table><tr><td>1</td></tr></table><script>alert(1)</script>',
          'text/plain': 'df'
        }
      })
    );
    const images = row.querySelectorAll('img');
    expect(images[0].getAttribute('src')).toBe(
      'data:image/png;base64,iVBORw0KGgo='
    );
    expect(images[1].getAttribute('src')).toMatch(
      /^data:image\/svg\+xml;base64,/
    );
    expect(row.querySelector('td')?.textContent).toBe('1');
    expect(row.querySelector('script')).toBeNull();
    expect(row.textContent).toContain('hello');
  });

  it('shows a Python error with its traceback, colour codes removed', () => {
    const row = render(
      ev(10, 'python_output', {
        error: {
          ename: 'ZeroDivisionError',
          evalue: 'division by zero',
          traceback: ['\x1b[0;31mZeroDivisionError\x1b[0m: division by zero']
        }
      })
    );
    expect(row.className).toContain('jp-convo-error');
    expect(row.querySelector('summary')?.textContent).toBe(
      'ZeroDivisionError: division by zero (1 lines)'
    );
    expect(row.querySelector('pre')?.textContent).toBe(
      'ZeroDivisionError: division by zero'
    );
    expect(render(ev(11, 'python_output', {})).textContent).toBe('no output');
  });

  it('colours diffs', () => {
    const row = render(
      ev(12, 'file_edit_result', {
        path: 'a.py',
        diff: '--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-old\n+new\n'
      })
    );
    expect(row.querySelector('.jp-convo-diff-add')?.textContent).toBe('+new');
    expect(row.querySelector('.jp-convo-diff-del')?.textContent).toBe('-old');
    expect(row.querySelector('.jp-convo-diff-hunk')?.textContent).toBe(
      '@@ -1 +1 @@'
    );
    expect(row.querySelector('summary')?.textContent).toBe('diff (5 lines)');
    expect(
      render(ev(13, 'file_edit_result', { path: 'a.py', diff: '' })).textContent
    ).toBe('a.py: no change');
  });

  it('shows replay verdicts, with the diff of a diverged step', () => {
    const diverged = render(
      ev(20, 'replay_step', {
        step: 2,
        recorded_event_id: 7,
        verdict: 'diverged',
        diff: '--- recorded\n+++ replayed\n-3\n+4\n'
      })
    );
    expect(diverged.className).toContain('jp-convo-error');
    expect(diverged.querySelector('.jp-convo-label')?.textContent).toBe(
      'Replay step 2: diverged (recorded action 7)'
    );
    expect(diverged.querySelector('.jp-convo-diff-add')?.textContent).toBe(
      '+4'
    );
    const summary = render(
      ev(21, 'replay_summary', {
        mode: 'actions',
        steps: 3,
        reproduced: 2,
        diverged: 1,
        skipped: 0,
        diverged_steps: [2]
      })
    );
    expect(summary.className).toContain('jp-convo-error');
    expect(summary.textContent).toBe(
      'ReplayReplay (actions): 2 of 3 steps reproduced, 1 diverged, 0 skipped (steps 2)'
    );
  });

  it('labels file actions, confirmations, states, statuses and errors', () => {
    expect(
      render(ev(1, 'file_edit', { command: 'create', path: 'x.py' }))
        .textContent
    ).toBe('Createx.py');
    expect(
      render(
        ev(2, 'confirmation', { cause: 1, confirmed: false, reason: 'no' })
      ).textContent
    ).toBe('Rejected action 1: no');
    expect(
      render(ev(3, 'agent_state', { state: 'rate_limited' })).textContent
    ).toBe('Agent rate limited');
    expect(
      render(ev(4, 'status', { status: 'ERROR', message: 'boom' })).className
    ).toContain('jp-convo-error');
    expect(
      render(ev(5, 'error', { code: 'AGENT_STUCK', message: 'loop' }))
        .textContent
    ).toBe('ErrorAGENT_STUCK loop');
    expect(render(ev(6, 'something_new')).textContent).toBe('something_new');
    const unconfined = render(
      ev(7, 'sandbox', { confined: false, message: 'NOT CONFINED: no bwrap' })
    );
    expect(unconfined.className).toContain('jp-convo-error');
    expect(unconfined.textContent).toBe('Not confinedNOT CONFINED: no bwrap');
    const confined = render(
      ev(8, 'sandbox', {
        mechanism: 'bubblewrap',
        confined: true,
        network: false,
        home: '/d/c/home',
        mounts: [
          { path: '/usr', mode: 'ro' },
          { path: '/tmp', mode: 'rw', source: '/d/c/tmp' }
        ]
      })
    );
    expect(confined.querySelector('summary')?.textContent).toBe(
      'Sandbox: bubblewrap, network off'
    );
    expect(confined.querySelector('pre')?.textContent).toBe(
      'ro     /usr\nrw     /tmp (from /d/c/tmp)\nHOME   /d/c/home'
    );
  });
});

describe('hasRow', () => {
  it('keeps metrics, titles and routine states for the header', () => {
    expect(hasRow(ev(0, 'llm_call'))).toBe(false);
    expect(hasRow(ev(0, 'title'))).toBe(false);
    expect(hasRow(ev(0, 'agent_state', { state: 'running' }))).toBe(false);
    expect(hasRow(ev(0, 'agent_state', { state: 'finished' }))).toBe(true);
    expect(hasRow(ev(0, 'think', { thought: 'hmm' }))).toBe(true);
  });
});

describe('helpers', () => {
  it('prefers images, then HTML, Markdown and text', () => {
    expect(preferredMime({ 'text/plain': 'a', 'text/html': '<b>' })).toBe(
      'text/html'
    );
    expect(preferredMime({ 'text/html': '<b>', 'image/png': 'x' })).toBe(
      'image/png'
    );
    expect(preferredMime({ 'application/json': {} })).toBeNull();
  });

  it("counts output lines like Python's rstrip('\\n').splitlines()", () => {
    expect(outputLineCount('a\nb\n')).toBe(2);
    expect(outputLineCount('a\nb\n\n\n')).toBe(2);
    expect(outputLineCount('a\r\n')).toBe(1);
    expect(outputLineCount('a\n\nb')).toBe(3);
    expect(outputLineCount('')).toBe(1);
    expect(outputLineCount('\n\n')).toBe(1);
  });

  it('clips long output and strips colour codes', () => {
    expect(clip('abcdef', 3)).toBe('abc\n... (3 more characters)');
    expect(stripAnsi('\x1b[1;32mok\x1b[0m')).toBe('ok');
  });
});
