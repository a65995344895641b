// End to end through a real forked worker process (tsx runs the TypeScript sources).
import assert from 'node:assert/strict';
import {mkdtemp, rm, writeFile} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {after, before, test} from 'node:test';
import {EngineClient} from '../source/engine/client.js';
import {CancelledError, type EngineEvent} from '../source/engine/protocol.js';
import '../source/engine/jobs/decompose.js';
import '../source/engine/jobs/stats.js';
import {generateSample} from '../source/lora/samples.js';
import {writeSafetensorsAtomic} from '../source/lora/writer.js';

let dir: string;
let small: string;
let spectra: Record<string, number[]>;
let alphaOverRank: number;

before(async () => {
	dir = await mkdtemp(path.join(os.tmpdir(), 'lorascope-engine-worker-'));
	small = path.join(dir, 'small.safetensors');
	// Float32 so the designed spectrum survives storage exactly enough for a 1e-4 check.
	const rank = 4;
	const alpha = 2;
	alphaOverRank = alpha / rank;
	const sample = await generateSample('sd15-lora', {rank, alpha, dtype: 'F32', hashes: false});
	spectra = sample.spectra;
	await writeSafetensorsAtomic(small, sample.tensors, sample.metadata, {overwrite: true});
});

after(async () => {
	await rm(dir, {recursive: true, force: true});
});

async function fakeWorker(name: string, body: string): Promise<string> {
	const file = path.join(dir, name);
	await writeFile(file, body);
	return file;
}

test('a real worker reports its device and decomposes a generated LoRA', async () => {
	const client = EngineClient.start({device: 'cpu'});
	try {
		const device = await client.device();
		assert.equal(device.device, 'cpu');
		assert.match(device.detail, /cpu/);
		let progressEvents = 0;
		const {promise} = client.run('decompose', {path: small}, {
			onProgress() {
				progressEvents++;
			},
		});
		const summary = await promise;
		assert.ok(progressEvents >= 1);
		assert.equal(summary.path, small);
		assert.ok(summary.modules.length > 100, `${summary.modules.length} modules`);
		let checked = 0;
		for (const module of summary.modules) {
			const designed = spectra[module.name];
			assert.ok(designed, `no designed spectrum for ${module.name}`);
			const expected = designed.map(value => value * alphaOverRank).filter(value => value > 0).sort((a, b) => b - a);
			assert.equal(module.resizable, true, module.name);
			assert.equal(module.singularValues.length, expected.length, module.name);
			for (const [index, value] of expected.entries()) {
				assert.ok(Math.abs(module.singularValues[index]! - value) <= 1e-4 * value, `${module.name} σ${index}: ${module.singularValues[index]} vs ${value}`);
			}

			checked++;
		}

		assert.equal(checked, summary.modules.length);
		// A second run is served from the cache of the same worker.
		const again = await client.run('decompose', {path: small}).promise;
		assert.deepEqual(again.modules.map(m => m.singularValues), summary.modules.map(m => m.singularValues));
		// Errors come back with a one-line reason and the engine keeps serving.
		await assert.rejects(client.run('decompose', {path: path.join(dir, 'missing.safetensors')}).promise, (error: Error & {reason?: string}) => {
			assert.ok(error.reason && !error.reason.includes('\n'));
			return true;
		});
		assert.equal((await client.run('decompose', {path: small}).promise).modules.length, summary.modules.length);
		// The stats job: each module's ‖scale·ΔW‖_F equals the norm of its designed spectrum.
		const stats = await client.run('stats', {path: small}).promise;
		assert.equal(stats.modules.length, summary.modules.length);
		for (const module of stats.modules) {
			const expected = Math.hypot(...spectra[module.name]!) * alphaOverRank;
			assert.ok(module.norm !== null && Math.abs(module.norm - expected) <= 1e-4 * Math.max(expected, 1e-12), `${module.name}: ${module.norm} vs ${expected}`);
		}
	} finally {
		await client.close();
	}
});

test('kill -9 of the worker mid-job rejects the job and the next job starts a new worker', async () => {
	const client = EngineClient.start({device: 'cpu'});
	try {
		await client.device();
		const firstPid = client.workerPid();
		let killed = false;
		const {promise} = client.run('decompose', {path: small}, {
			onProgress() {
				if (!killed) {
					killed = true;
					process.kill(client.workerPid()!, 'SIGKILL');
				}
			},
		});
		await assert.rejects(promise, /engine stopped: signal SIGKILL/);
		const summary = await client.run('decompose', {path: small}).promise;
		assert.ok(summary.modules.length > 100);
		assert.notEqual(client.workerPid(), firstPid);
	} finally {
		await client.close();
	}
});

test('cancel rejects with CancelledError and the engine keeps serving', async () => {
	const client = EngineClient.start({device: 'cpu'});
	try {
		const events: EngineEvent[] = [];
		client.onEvent(event => events.push(event));
		let cancelled = false;
		const job = client.run('decompose', {path: small}, {
			onProgress() {
				if (!cancelled) {
					cancelled = true;
					client.cancel(job.jobId);
				}
			},
		});
		await assert.rejects(job.promise, CancelledError);
		assert.ok(events.some(event => event.type === 'cancelled' && event.jobId === job.jobId));
		assert.ok(!events.some(event => event.type === 'result' && event.jobId === job.jobId));
		await client.idle();
		assert.ok((await client.run('decompose', {path: small}).promise).modules.length > 100);
	} finally {
		await client.close();
	}
});

test('the worker output on stdout/stderr becomes log events', async () => {
	const worker = await fakeWorker('noisy-worker.mjs', `
process.stdout.write('native noise on stdout\\n');
process.stderr.write('native noise on stderr\\n');
process.send({type: 'ready', device: 'cpu', detail: 'fake'});
process.on('message', m => {
	if (m.type === 'run') process.send({type: 'result', jobId: m.jobId, kind: m.kind, result: 7});
	if (m.type === 'shutdown') process.exit(0);
});
`);
	const client = EngineClient.start({workerPath: worker});
	const logs: string[] = [];
	client.onEvent(event => {
		if (event.type === 'log') {
			logs.push(`${event.level} ${event.message}`);
		}
	});
	try {
		assert.equal(await client.run('decompose', {path: 'x'}).promise as unknown, 7);
		const deadline = Date.now() + 3000;
		while (logs.length < 2 && Date.now() < deadline) {
			await new Promise(resolve => {
				setTimeout(resolve, 10);
			});
		}

		assert.ok(logs.includes('info engine: native noise on stdout'), logs.join('; '));
		assert.ok(logs.includes('warn engine: native noise on stderr'), logs.join('; '));
	} finally {
		await client.close();
	}
});

test('a worker stuck on a cancelled job is killed after the grace period; the next job gets a fresh worker', async () => {
	const worker = await fakeWorker('stuck-worker.mjs', `
process.send({type: 'ready', device: 'cpu', detail: 'fake'});
process.on('message', m => {
	if (m.type === 'run' && m.params.stuck) {
		const end = Date.now() + 20000;
		while (Date.now() < end) {}
	}
	if (m.type === 'run') process.send({type: 'result', jobId: m.jobId, kind: m.kind, result: process.pid});
	if (m.type === 'shutdown') process.exit(0);
});
`);
	const client = EngineClient.start({workerPath: worker, cancelGraceMs: 300});
	try {
		await client.device();
		const firstPid = client.workerPid();
		const stuck = client.run('decompose', {path: 'stuck', stuck: true} as never);
		await new Promise(resolve => {
			setTimeout(resolve, 100);
		});
		const started = Date.now();
		client.cancel(stuck.jobId);
		await assert.rejects(stuck.promise, CancelledError);
		assert.ok(Date.now() - started < 5000);
		const pid = await client.run('decompose', {path: 'next'}).promise as unknown;
		assert.notEqual(pid, firstPid);
	} finally {
		await client.close();
	}
});

test('a worker that fails to start rejects pending jobs instead of hanging', async () => {
	const worker = await fakeWorker('broken-worker.mjs', 'throw new Error("cannot load");\n');
	const client = EngineClient.start({workerPath: worker});
	try {
		await assert.rejects(client.device(), /engine stopped: exit code 1/);
		await assert.rejects(client.run('decompose', {path: 'x'}).promise, /engine stopped: exit code 1/);
	} finally {
		await client.close();
	}
});
