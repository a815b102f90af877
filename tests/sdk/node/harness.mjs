// Shared by the Node SDK tests: a small OpenAI-compatible chat upstream
// (node:http) and the yallmp binary (YALLMP_BIN) in front of it, on port 0.
//
// The upstream's models (each also a yallmp model with `supports_responses:
// false`, so the Responses API reaches it translated to chat completions):
//   mock   answers "Hello from the mock." (JSON, or SSE in four pieces with a
//          usage chunk when asked), or, when the request has tools, calls the
//          first one with {"city":"Paris"}; once the history holds the tool's
//          result, answers with that result quoted.
//   text   answers as `mock` does, but never calls a tool.
//   cut    streams one chunk ("Half") and then drops the connection.
//   upstream-error  streams one chunk, then an error event.
//   no-model  answers as `mock` does, without `model` in its chunks and
//          completion (yallmp names the response after the requested model).
// The other models' chunks carry `model`, as most backends send it.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const CLIENT_KEY = 'sk-node-sdk-test-key';
export const TEXT = 'Hello from the mock.';
export const TOOL_ARGS = { city: 'Paris' };
export const CAPACITY = 'The backend ran out of capacity.';
const USAGE = { prompt_tokens: 30, completion_tokens: 12, total_tokens: 42 };

/** The mock upstream; `requests` keeps every request body it got. */
export async function startUpstream() {
  const requests = [];
  const server = http.createServer(async (req, res) => {
    let raw = '';
    for await (const piece of req) raw += piece;
    let body;
    try {
      body = JSON.parse(raw);
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'bad json', type: 'invalid_request_error' } }));
      return;
    }
    requests.push(body);
    answer(body, res);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${server.address().port}/v1`,
    requests,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

function answer(body, res) {
  const model = body.model === 'no-model' ? undefined : body.model;
  const chunk = (delta, finish = null, extra = {}) =>
    `data: ${JSON.stringify({
      id: 'chatcmpl-node',
      object: 'chat.completion.chunk',
      created: 1,
      model,
      choices: [{ index: 0, delta, finish_reason: finish }],
      ...extra,
    })}\n\n`;
  if (body.model === 'cut') {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.flushHeaders();
    res.write(chunk({ role: 'assistant', content: 'Half' }), () => res.socket.destroy());
    return;
  }
  if (body.model === 'upstream-error') {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.end(
      chunk({ role: 'assistant', content: 'Half' }) +
        `data: ${JSON.stringify({ error: { message: CAPACITY, type: 'server_error' } })}\n\n`,
    );
    return;
  }
  const messages = body.messages ?? [];
  const last = messages[messages.length - 1] ?? {};
  // `text` answers with text even when the request has tools (an agent
  // such as Codex always sends its own).
  const tools = body.model === 'text' ? [] : (body.tools ?? []);
  let message;
  let finish;
  if (last.role === 'tool') {
    const result = typeof last.content === 'string' ? last.content : JSON.stringify(last.content);
    message = { role: 'assistant', content: `The tool said: ${result}` };
    finish = 'stop';
  } else if (tools.length > 0) {
    const name = tools[0].function.name;
    message = {
      role: 'assistant',
      content: null,
      tool_calls: [
        { id: 'call_node_1', type: 'function', function: { name, arguments: JSON.stringify(TOOL_ARGS) } },
      ],
    };
    finish = 'tool_calls';
  } else {
    message = { role: 'assistant', content: TEXT };
    finish = 'stop';
  }
  if (!body.stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        id: 'chatcmpl-node',
        object: 'chat.completion',
        created: 1,
        model,
        choices: [{ index: 0, message, finish_reason: finish }],
        usage: USAGE,
      }),
    );
    return;
  }
  const frames = [chunk({ role: 'assistant', content: '' })];
  if (message.tool_calls) {
    const call = message.tool_calls[0];
    const args = call.function.arguments;
    const half = Math.floor(args.length / 2);
    frames.push(
      chunk({ tool_calls: [{ index: 0, id: call.id, type: 'function', function: { name: call.function.name, arguments: '' } }] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: args.slice(0, half) } }] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: args.slice(half) } }] }),
    );
  } else {
    // Four pieces, split on word boundaries.
    for (const word of message.content.match(/\S+\s*/g)) frames.push(chunk({ content: word }));
  }
  frames.push(chunk({}, finish));
  if (body.stream_options?.include_usage) {
    frames.push(
      `data: ${JSON.stringify({ id: 'chatcmpl-node', object: 'chat.completion.chunk', created: 1, model, choices: [], usage: USAGE })}\n\n`,
    );
  }
  frames.push('data: [DONE]\n\n');
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  res.end(frames.join(''));
}

/** The yallmp binary in front of `upstreamUrl`; `url` is its base (no /v1). */
export async function startProxy(upstreamUrl) {
  const bin = process.env.YALLMP_BIN;
  if (!bin) throw new Error('YALLMP_BIN is not set (run tests/sdk/node through scripts/sdk-test.sh)');
  const work = mkdtempSync(join(tmpdir(), 'yallmp-node-'));
  const model = (name) => ({
    model_name: name,
    model_params: { api_base: upstreamUrl, api_key: 'sk-upstream', supports_responses: false, request_timeout: 30 },
  });
  const config = {
    model_list: ['mock', 'text', 'cut', 'upstream-error', 'no-model'].map(model),
    proxy_settings: { enable_responses_endpoint: true, auth: { api_keys: [CLIENT_KEY] } },
  };
  const configPath = join(work, 'config.yaml');
  writeFileSync(configPath, JSON.stringify(config, null, 2));
  const logPath = join(work, 'yallmp.log');
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('YALLMP_')));
  env.RUST_LOG ??= 'info';
  const err = openSync(logPath, 'w');
  const proc = spawn(bin, ['--config', configPath, '--host', '127.0.0.1', '--port', '0'], {
    cwd: work,
    env,
    stdio: ['ignore', 'pipe', err],
  });
  const tail = () => {
    try {
      return readFileSync(logPath, 'utf8').split('\n').slice(-40).join('\n');
    } catch {
      return '';
    }
  };
  // The listen line on stdout gives the port; stdout is drained after it.
  const url = await new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`yallmp printed no listen line:\n${tail()}`)), 60_000);
    proc.stdout.on('data', (d) => {
      seen += d;
      const m = seen.match(/listening on (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1].replace(/\/$/, ''));
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`yallmp exited with ${code} before it was ready:\n${tail()}`));
    });
  });
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {
      // not yet
    }
    if (i > 300) throw new Error(`yallmp not ready at ${url}/healthz:\n${tail()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    tail,
    async close() {
      if (proc.exitCode === null) {
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
        await once(proc, 'exit');
        clearTimeout(timer);
      }
      rmSync(work, { recursive: true, force: true });
    },
  };
}
