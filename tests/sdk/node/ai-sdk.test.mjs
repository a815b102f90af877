// The Vercel AI SDK (npm `ai` + `@ai-sdk/openai`) through yallmp: its chat
// model and its Responses model (yallmp translates Responses to chat for this
// backend), generateText and streamText, a tool round trip run by the SDK
// itself (stopWhen), and a cut stream whose error must be yallmp's message
// (not the SDK's "Type validation failed" on an event it cannot parse).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, stepCountIs, streamText, tool } from 'ai';
import { z } from 'zod';
import { CAPACITY, CLIENT_KEY, TEXT, TOOL_ARGS, startProxy, startUpstream } from './harness.mjs';

let upstream;
let proxy;
let openai;

before(async () => {
  upstream = await startUpstream();
  proxy = await startProxy(upstream.url);
  openai = createOpenAI({ baseURL: `${proxy.url}/v1`, apiKey: CLIENT_KEY });
});

after(async () => {
  await proxy?.close();
  upstream?.close();
});

const weather = () =>
  tool({
    description: 'Current weather for a city',
    inputSchema: z.object({ city: z.string() }),
    execute: async ({ city }) => `sunny in ${city}`,
  });

/** Keeps the expected errors out of the output (the SDK logs them by default). */
const quiet = () => {};

/** streamText's parts and the error parts among them. */
async function drain(result) {
  const parts = [];
  for await (const p of result.fullStream) parts.push(p);
  return { parts, errors: parts.filter((p) => p.type === 'error').map((p) => p.error) };
}

/** An error part's message, whatever shape the SDK gave it. */
function messageOf(error) {
  if (error instanceof Error) return error.message;
  if (typeof error === 'object' && error) return error.message ?? JSON.stringify(error);
  return String(error);
}

for (const [name, model] of [
  ['chat', (id) => openai.chat(id)],
  ['responses', (id) => openai.responses(id)],
]) {
  describe(`${name} model`, () => {
    test('generateText', async () => {
      const r = await generateText({ model: model('mock'), prompt: 'hi', maxRetries: 0 });
      assert.equal(r.text, TEXT);
      assert.equal(r.finishReason, 'stop');
      assert.equal(r.usage.totalTokens, 42);
    });

    test('streamText', async () => {
      const r = streamText({ model: model('mock'), prompt: 'hi', maxRetries: 0 });
      const { errors } = await drain(r);
      assert.deepEqual(errors, []);
      assert.equal(await r.text, TEXT);
      assert.equal(await r.finishReason, 'stop');
      assert.equal((await r.usage).totalTokens, 42);
    });

    test('tool round trip (generateText)', async () => {
      const r = await generateText({
        model: model('mock'),
        prompt: 'Weather in Paris?',
        tools: { get_weather: weather() },
        stopWhen: stepCountIs(3),
        maxRetries: 0,
      });
      assert.equal(r.steps.length, 2);
      const call = r.steps[0].toolCalls[0];
      assert.equal(call.toolName, 'get_weather');
      assert.deepEqual(call.input, TOOL_ARGS);
      assert.match(r.text, /^The tool said: .*sunny in Paris/);
      const sent = upstream.requests.at(-1).messages;
      assert.equal(sent.at(-1).role, 'tool');
    });

    test('tool round trip (streamText)', async () => {
      const r = streamText({
        model: model('mock'),
        prompt: 'Weather in Paris?',
        tools: { get_weather: weather() },
        stopWhen: stepCountIs(3),
        maxRetries: 0,
      });
      const { parts, errors } = await drain(r);
      assert.deepEqual(errors, []);
      const call = parts.find((p) => p.type === 'tool-call');
      assert.deepEqual(call.input, TOOL_ARGS);
      assert.ok(parts.some((p) => p.type === 'tool-result' && p.output === 'sunny in Paris'));
      assert.match(await r.text, /^The tool said: .*sunny in Paris/);
    });
  });
}

test('responses: a backend that sends no model name (generateText)', async () => {
  const r = await generateText({ model: openai.responses('no-model'), prompt: 'hi', maxRetries: 0 });
  assert.equal(r.text, TEXT);
});

test('responses: a backend that sends no model name (streamText)', async () => {
  // The AI SDK requires a string `model` in `response.created`.
  const r = streamText({ model: openai.responses('no-model'), prompt: 'hi', maxRetries: 0, onError: quiet });
  const { errors } = await drain(r);
  assert.deepEqual(errors.map(messageOf), []);
  assert.equal(await r.text, TEXT);
  assert.equal((await r.response).modelId, 'no-model');
});

describe('failed streams', () => {
  test("responses: a cut stream surfaces yallmp's error", async () => {
    const r = streamText({ model: openai.responses('cut'), prompt: 'hi', maxRetries: 0, onError: quiet });
    const { parts, errors } = await drain(r);
    assert.ok(parts.some((p) => p.type === 'text-delta' && p.text === 'Half'));
    assert.equal(errors.length, 1, `errors: ${errors.map(messageOf)}`);
    const message = messageOf(errors[0]);
    assert.doesNotMatch(message, /Type validation failed/);
    assert.match(message, /upstream stream failed/);
  });

  test("responses: an upstream error event surfaces the backend's message", async () => {
    const r = streamText({ model: openai.responses('upstream-error'), prompt: 'hi', maxRetries: 0, onError: quiet });
    const { errors } = await drain(r);
    assert.equal(errors.length, 1, `errors: ${errors.map(messageOf)}`);
    const message = messageOf(errors[0]);
    assert.doesNotMatch(message, /Type validation failed/);
    assert.match(message, new RegExp(CAPACITY.replace('.', '\\.')));
  });

  test('chat: a cut stream is an error, not a clean finish', async () => {
    const r = streamText({ model: openai.chat('cut'), prompt: 'hi', maxRetries: 0, onError: quiet });
    const { parts, errors } = await drain(r);
    assert.ok(parts.some((p) => p.type === 'text-delta' && p.text === 'Half'));
    assert.ok(errors.length >= 1, 'the cut should show as an error part');
    assert.doesNotMatch(messageOf(errors[0]), /Type validation failed/);
    assert.match(messageOf(errors[0]), /upstream stream failed/);
  });
});
