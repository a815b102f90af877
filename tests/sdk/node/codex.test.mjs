// The Codex CLI (npm `@openai/codex`, its own Linux binary) through yallmp:
// `codex exec` against a chat-only backend, so every turn is a Responses
// request translated to chat. Over plain HTTP (POST /v1/responses) and over
// the Responses WebSocket mode (`supports_websockets`): an answer comes
// through, and a stream the backend cuts shows yallmp's own error message
// (before, Codex said only "stream closed before response.completed").
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { CLIENT_KEY, TEXT, startProxy, startUpstream } from './harness.mjs';

const CODEX = join(dirname(fileURLToPath(import.meta.url)), '..', 'node_modules', '.bin', 'codex');

let upstream;
let proxy;
const homes = [];

before(async () => {
  upstream = await startUpstream();
  proxy = await startProxy(upstream.url);
});

after(async () => {
  await proxy?.close();
  upstream?.close();
  for (const h of homes) rmSync(h, { recursive: true, force: true });
});

/** A CODEX_HOME whose provider is this yallmp; no retries (a cut is final). */
function home(websockets) {
  const dir = mkdtempSync(join(tmpdir(), 'codex-home-'));
  homes.push(dir);
  writeFileSync(
    join(dir, 'config.toml'),
    [
      'model = "text"',
      'model_provider = "yallmp"',
      '[model_providers.yallmp]',
      'name = "yallmp"',
      `base_url = "${proxy.url}/v1"`,
      'wire_api = "responses"',
      'env_key = "YALLMP_TEST_KEY"',
      'request_max_retries = 0',
      'stream_max_retries = 0',
      `supports_websockets = ${websockets}`,
      '',
    ].join('\n'),
  );
  return dir;
}

/** `codex exec` with `model`; its exit code, stdout and stderr. */
async function codexExec(codexHome, model) {
  const cwd = mkdtempSync(join(tmpdir(), 'codex-cwd-'));
  homes.push(cwd);
  const child = spawn(CODEX, ['exec', '--skip-git-repo-check', '-m', model, 'say hi'], {
    cwd,
    env: { ...process.env, CODEX_HOME: codexHome, YALLMP_TEST_KEY: CLIENT_KEY, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const [code] = await once(child, 'exit');
  clearTimeout(timer);
  return { code, out, err };
}

async function metric(pattern) {
  const text = await (await fetch(`${proxy.url}/metrics`)).text();
  return text.split('\n').filter((l) => pattern.test(l));
}

for (const websockets of [false, true]) {
  describe(`codex exec (${websockets ? 'WebSocket mode' : 'HTTP'})`, () => {
    test('an answer comes through', async () => {
      const r = await codexExec(home(websockets), 'text');
      assert.equal(r.code, 0, `${r.out}\n${r.err}\n${proxy.tail()}`);
      assert.match(r.out, new RegExp(TEXT.replace('.', '\\.')));
      if (websockets) {
        // The turn went over an upgraded socket.
        assert.ok((await metric(/route="\/v1\/responses".*status="101"/)).length > 0, await metric(/yallmp_requests_total/));
      }
    });

    test("a cut stream shows yallmp's error", async () => {
      const r = await codexExec(home(websockets), 'cut');
      assert.notEqual(r.code, 0, r.out);
      const all = `${r.out}\n${r.err}`;
      assert.match(all, /upstream stream failed/, all);
      assert.doesNotMatch(all, /stream closed before response\.completed/, all);
    });
  });
}
