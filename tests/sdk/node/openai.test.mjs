// The openai Node SDK (npm `openai`) through yallmp: chat completions and the
// Responses API (translated to chat for this backend), plain and streamed, a
// tool round trip, and a cut stream that must surface yallmp's error.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { CAPACITY, CLIENT_KEY, TEXT, TOOL_ARGS, startProxy, startUpstream } from './harness.mjs';

let upstream;
let proxy;
let client;

before(async () => {
  upstream = await startUpstream();
  proxy = await startProxy(upstream.url);
  client = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: CLIENT_KEY, maxRetries: 0, timeout: 60_000 });
});

after(async () => {
  await proxy?.close();
  upstream?.close();
});

const TOOLS = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Current weather for a city',
      parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
    },
  },
];
const RESPONSES_TOOLS = TOOLS.map(({ function: f }) => ({ type: 'function', ...f, strict: false }));

describe('chat completions', () => {
  test('create', async () => {
    const r = await client.chat.completions.create({ model: 'mock', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(r.choices[0].message.content, TEXT);
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.equal(r.usage.total_tokens, 42);
  });

  test('stream with usage', async () => {
    const stream = await client.chat.completions.create({
      model: 'mock',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage;
    for await (const c of stream) {
      text += c.choices[0]?.delta?.content ?? '';
      usage = c.usage ?? usage;
    }
    assert.equal(text, TEXT);
    assert.equal(usage.total_tokens, 42);
  });

  test('tool round trip (streamed helper)', async () => {
    const messages = [{ role: 'user', content: 'Weather in Paris?' }];
    const runner = client.chat.completions.stream({ model: 'mock', messages, tools: TOOLS });
    const first = await runner.finalChatCompletion();
    const call = first.choices[0].message.tool_calls[0];
    assert.equal(call.function.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.function.arguments), TOOL_ARGS);
    messages.push(first.choices[0].message, { role: 'tool', tool_call_id: call.id, content: 'sunny, 21 C' });
    const second = await client.chat.completions.create({ model: 'mock', messages, tools: TOOLS });
    assert.equal(second.choices[0].message.content, 'The tool said: sunny, 21 C');
    const sent = upstream.requests.at(-1).messages;
    assert.equal(sent.at(-1).role, 'tool');
    assert.equal(sent.at(-1).tool_call_id, call.id);
  });

  test('a cut stream raises', async () => {
    const stream = await client.chat.completions.create({
      model: 'cut',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    });
    let text = '';
    await assert.rejects(async () => {
      for await (const c of stream) text += c.choices[0]?.delta?.content ?? '';
    });
    assert.equal(text, 'Half');
  });
});

describe('responses (translated to chat)', () => {
  test('create', async () => {
    const r = await client.responses.create({ model: 'mock', input: 'hi' });
    assert.equal(r.status, 'completed');
    assert.equal(r.output_text, TEXT);
    assert.equal(r.usage.total_tokens, 42);
  });

  test('stream', async () => {
    const stream = client.responses.stream({ model: 'mock', input: 'hi' });
    const seen = [];
    for await (const e of stream) seen.push(e);
    const final = await stream.finalResponse();
    assert.equal(final.output_text, TEXT);
    assert.equal(seen[0].type, 'response.created');
    assert.equal(typeof seen[0].response.model, 'string');
    assert.equal(seen.at(-1).type, 'response.completed');
    assert.deepEqual(
      seen.map((e) => e.sequence_number),
      seen.map((_, i) => i),
    );
    const deltas = seen.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta);
    assert.equal(deltas.join(''), TEXT);
  });

  test('tool round trip', async () => {
    const first = await client.responses.create({ model: 'mock', input: 'Weather in Paris?', tools: RESPONSES_TOOLS });
    const call = first.output.find((o) => o.type === 'function_call');
    assert.equal(call.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.arguments), TOOL_ARGS);
    // The second turn sends the whole history (no previous_response_id).
    const stream = client.responses.stream({
      model: 'mock',
      tools: RESPONSES_TOOLS,
      input: [
        { role: 'user', content: 'Weather in Paris?' },
        call,
        { type: 'function_call_output', call_id: call.call_id, output: 'sunny, 21 C' },
      ],
    });
    const second = await stream.finalResponse();
    assert.equal(second.output_text, 'The tool said: sunny, 21 C');
    const sent = upstream.requests.at(-1).messages;
    assert.equal(sent.at(-1).role, 'tool');
    assert.equal(sent.at(-1).tool_call_id, call.call_id);
  });

  test("a cut stream raises yallmp's error", async () => {
    const stream = client.responses.stream({ model: 'cut', input: 'hi' });
    const seen = [];
    const err = await (async () => {
      try {
        for await (const e of stream) seen.push(e);
      } catch (e) {
        return e;
      }
      return null;
    })();
    assert.ok(err, 'the stream should fail');
    assert.match(err.message, /upstream stream failed/);
    assert.equal(seen[0].type, 'response.created');
    assert.ok(seen.some((e) => e.type === 'response.output_text.delta' && e.delta === 'Half'));
    assert.deepEqual(
      seen.map((e) => e.sequence_number),
      seen.map((_, i) => i),
    );
  });

  test('a cut stream on the wire: every event numbered, error then response.failed', async () => {
    // What the SDKs read, without an SDK: the events after the last one
    // they show are checked here.
    const res = await fetch(`${proxy.url}/v1/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'cut', input: 'hi', stream: true }),
    });
    assert.equal(res.status, 200);
    const events = (await res.text())
      .split('\n\n')
      .map((f) => f.split('\n').find((l) => l.startsWith('data: ')))
      .filter(Boolean)
      .map((l) => JSON.parse(l.slice(6)));
    assert.deepEqual(
      events.map((e) => e.sequence_number),
      events.map((_, i) => i),
    );
    const [error, failed] = events.slice(-2);
    assert.equal(error.type, 'error');
    assert.equal(error.code, 'stream_interrupted');
    assert.match(error.message, /upstream stream failed/);
    assert.equal(failed.type, 'response.failed');
    assert.equal(failed.response.id, events[0].response.id);
    assert.equal(failed.response.model, 'cut');
    assert.equal(failed.response.output[0].content[0].text, 'Half');
  });

  test("an upstream error event raises the backend's message", async () => {
    const stream = client.responses.stream({ model: 'upstream-error', input: 'hi' });
    await assert.rejects(
      async () => {
        for await (const _ of stream);
      },
      (e) => e.message.includes(CAPACITY),
    );
  });
});

test('unknown model is a 404 in the SDK', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'hi' }] }),
    (e) => e instanceof OpenAI.NotFoundError,
  );
});
