import assert from 'node:assert/strict';
import {test} from 'node:test';
import type {JobContext} from '../source/engine/job-context.js';
import type {EngineEvent, JobKind} from '../source/engine/protocol.js';
import {registerJob, unregisterJob} from '../source/engine/registry.js';
import {EngineServer, type EngineServerOptions} from '../source/engine/server.js';

type Handler = (params: unknown, ctx: JobContext) => Promise<unknown>;

// Test-only kinds are registered under throwaway names and cast, so the shared JobKinds stays clean.
let kindCounter = 0;
function testKind(handler: Handler): JobKind {
	const kind = `test-kind-${kindCounter++}` as JobKind;
	registerJob(kind, handler as never);
	return kind;
}

function makeServer(options: EngineServerOptions = {}) {
	const events: EngineEvent[] = [];
	const server = new EngineServer(event => events.push(event), {resolveDevice: () => ({device: 'cpu', detail: 'cpu (test)'}), ...options});
	const of = <T extends EngineEvent['type']>(type: T, jobId?: string) =>
		events.filter((event): event is Extract<EngineEvent, {type: T}> => event.type === type && (jobId === undefined || (event as {jobId?: string}).jobId === jobId));
	return {server, events, of};
}

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
	const start = Date.now();
	while (!condition()) {
		if (Date.now() - start > timeoutMs) {
			throw new Error('condition not reached');
		}

		await new Promise(resolve => {
			setTimeout(resolve, 2);
		});
	}
}

test('posts ready with the device and its detail', () => {
	const {of} = makeServer();
	assert.deepEqual(of('ready'), [{type: 'ready', device: 'cpu', detail: 'cpu (test)'}]);
});

test('a job result is posted with its id and kind', async () => {
	const kind = testKind(async (params) => ({echo: params}));
	const {server, of} = makeServer();
	server.handle({type: 'run', jobId: 'a', kind, params: {x: 1}});
	await server.idle();
	assert.deepEqual(of('result'), [{type: 'result', jobId: 'a', kind, result: {echo: {x: 1}}}]);
	unregisterJob(kind);
});

test('progress is throttled to the interval, keeps the final update and adds throughput and ETA', async () => {
	let clock = 0;
	const calls = 1000;
	const kind = testKind(async (_params, ctx) => {
		for (let i = 1; i <= calls; i++) {
			clock += 1;
			// Ends on 999/1000 so the last update is throttled and must be flushed before the result.
			ctx.progress(Math.min(i, calls - 1), calls, `step ${i}`, i * 1000);
		}

		return 'done';
	});
	const {server, of} = makeServer({now: () => clock, progressIntervalMs: 50});
	server.handle({type: 'run', jobId: 'p', kind, params: {}});
	await server.idle();
	const progress = of('progress', 'p');
	// 1000 calls over 1000 fake ms at one per 50 ms: about 20, plus the flushed last one.
	assert.ok(progress.length >= 19 && progress.length <= 22, `got ${progress.length} progress events`);
	const last = progress.at(-1)!;
	assert.equal(last.done, calls - 1);
	assert.equal(last.label, `step ${calls}`);
	// bytes/s: 1e6 bytes in 1 s of fake time.
	assert.ok(Math.abs(last.bytesPerSecond! - 1e6) < 1e6 * 0.01, String(last.bytesPerSecond));
	assert.ok(last.etaSeconds! >= 0 && last.etaSeconds! < 0.01, String(last.etaSeconds));
	const resultIndex = of('result').length;
	assert.equal(resultIndex, 1);
	unregisterJob(kind);
});

test('a final progress update (done = total) is never throttled', async () => {
	const clock = 0;
	const kind = testKind(async (_params, ctx) => {
		ctx.progress(1, 3);
		ctx.progress(2, 3);
		ctx.progress(3, 3);
		return null;
	});
	const {server, of} = makeServer({now: () => clock});
	server.handle({type: 'run', jobId: 'f', kind, params: {}});
	await server.idle();
	assert.deepEqual(of('progress', 'f').map(event => event.done), [1, 3]);
	unregisterJob(kind);
});

test('cancel posts cancelled, not error, and no result', async () => {
	let iterations = 0;
	const kind = testKind(async (_params, ctx) => {
		for (;;) {
			iterations++;
			await ctx.yield();
		}
	});
	const {server, of} = makeServer();
	server.handle({type: 'run', jobId: 'c', kind, params: {}});
	await waitFor(() => iterations > 5);
	server.handle({type: 'cancel', jobId: 'c'});
	await server.idle();
	assert.equal(of('cancelled', 'c').length, 1);
	assert.equal(of('error', 'c').length, 0);
	assert.equal(of('result', 'c').length, 0);
	unregisterJob(kind);
});

test('a result that arrives after cancel is dropped', async () => {
	let release!: () => void;
	const gate = new Promise<void>(resolve => {
		release = resolve;
	});
	let started = false;
	const kind = testKind(async () => {
		started = true;
		// Ignores the abort signal, like a kernel stuck in native code.
		await gate;
		return 'stale';
	});
	const {server, of} = makeServer();
	server.handle({type: 'run', jobId: 's', kind, params: {}});
	await waitFor(() => started);
	server.handle({type: 'cancel', jobId: 's'});
	assert.equal(of('cancelled', 's').length, 1, 'cancelled is posted at once');
	release();
	await server.idle();
	assert.equal(of('result', 's').length, 0);
	assert.equal(of('cancelled', 's').length, 1);
	unregisterJob(kind);
});

test('a queued job that is cancelled never runs', async () => {
	let ran = 0;
	let release!: () => void;
	const gate = new Promise<void>(resolve => {
		release = resolve;
	});
	const slow = testKind(async () => {
		await gate;
		return 1;
	});
	const counted = testKind(async () => ++ran);
	const {server, of} = makeServer();
	server.handle({type: 'run', jobId: 'first', kind: slow, params: {}});
	server.handle({type: 'run', jobId: 'second', kind: counted, params: {}});
	server.handle({type: 'cancel', jobId: 'second'});
	release();
	await server.idle();
	assert.equal(ran, 0);
	assert.equal(of('cancelled', 'second').length, 1);
	assert.equal(of('result', 'first').length, 1);
	unregisterJob(slow);
	unregisterJob(counted);
});

test('an error is serialised with a one-line reason and the engine keeps serving', async () => {
	const failing = testKind(async () => {
		throw Object.assign(new Error('bad tensor\nstack-like detail\nmore'), {filePath: '/x/y.safetensors'});
	});
	const ok = testKind(async () => 42);
	const {server, of} = makeServer();
	server.handle({type: 'run', jobId: 'bad', kind: failing, params: {}});
	server.handle({type: 'run', jobId: 'good', kind: ok, params: {}});
	await server.idle();
	const [error] = of('error', 'bad');
	assert.ok(error);
	assert.equal(error.error.reason, 'bad tensor');
	assert.equal(error.error.filePath, '/x/y.safetensors');
	assert.ok(!error.error.reason.includes('\n'));
	assert.deepEqual(of('result', 'good').map(event => event.result), [42]);
	unregisterJob(failing);
	unregisterJob(ok);
});

test('a reason given by the error with several lines is cut to its first line', async () => {
	const failing = testKind(async () => {
		throw Object.assign(new Error('x'), {reason: 'line one\nline two'});
	});
	const {server, of} = makeServer();
	server.handle({type: 'run', jobId: 'r', kind: failing, params: {}});
	await server.idle();
	assert.equal(of('error', 'r')[0]?.error.reason, 'line one');
	unregisterJob(failing);
});

test('unknown kinds and duplicate ids are errors, not crashes', async () => {
	let release!: () => void;
	const gate = new Promise<void>(resolve => {
		release = resolve;
	});
	const slow = testKind(async () => gate);
	const {server, of} = makeServer();
	server.handle({type: 'run', jobId: 'u', kind: 'no-such-kind' as JobKind, params: {}});
	server.handle({type: 'run', jobId: 'd', kind: slow, params: {}});
	server.handle({type: 'run', jobId: 'd', kind: slow, params: {}});
	release();
	await server.idle();
	assert.match(of('error', 'u')[0]?.error.reason ?? '', /unknown job kind/);
	assert.match(of('error', 'd')[0]?.error.reason ?? '', /duplicate job id/);
	assert.equal(of('result', 'd').length, 1);
	unregisterJob(slow);
});

test('logs from a job become log events tagged with the job id', async () => {
	const kind = testKind(async (_params, ctx) => {
		ctx.log('info', 'hello');
		return null;
	});
	const {server, of} = makeServer();
	server.handle({type: 'run', jobId: 'l', kind, params: {}});
	await server.idle();
	assert.deepEqual(of('log'), [{type: 'log', level: 'info', message: 'hello', jobId: 'l'}]);
	unregisterJob(kind);
});

test('the cache is shared between jobs of one server', async () => {
	const kind = testKind(async (_params, ctx) => {
		const count = ((ctx.cache.get('n') as number | undefined) ?? 0) + 1;
		ctx.cache.set('n', count);
		return count;
	});
	const {server, of} = makeServer();
	server.handle({type: 'run', jobId: '1', kind, params: {}});
	server.handle({type: 'run', jobId: '2', kind, params: {}});
	await server.idle();
	assert.deepEqual(of('result').map(event => event.result), [1, 2]);
	unregisterJob(kind);
});

test('cuda requested but unavailable: ready carries the error and every job fails with it', async () => {
	const kind = testKind(async () => 1);
	const {server, of} = makeServer({
		device: 'cuda',
		resolveDevice() {
			throw Object.assign(new Error('CUDA requested but unavailable: libcublasLt.so.12 not found'), {reason: 'CUDA requested but unavailable: libcublasLt.so.12 not found'});
		},
	});
	const [ready] = of('ready');
	assert.equal(ready?.device, 'cpu');
	assert.match(ready?.error?.reason ?? '', /CUDA requested but unavailable/);
	server.handle({type: 'run', jobId: 'x', kind, params: {}});
	await server.idle();
	assert.match(of('error', 'x')[0]?.error.reason ?? '', /CUDA requested but unavailable/);
	assert.equal(of('result').length, 0);
	unregisterJob(kind);
});

test('shutdown cancels running jobs and then calls onShutdown', async () => {
	let shutdown = false;
	const kind = testKind(async (_params, ctx) => {
		for (;;) {
			await ctx.yield();
		}
	});
	const {server, of} = makeServer({
		onShutdown() {
			shutdown = true;
		},
	});
	server.handle({type: 'run', jobId: 'z', kind, params: {}});
	server.handle({type: 'shutdown'});
	await waitFor(() => shutdown);
	assert.equal(of('cancelled', 'z').length, 1);
	unregisterJob(kind);
});
