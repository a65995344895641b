// Random byte mutations (fixed seed) of valid generated LoRAs through readHeader, buildLoraModel,
// loadLoraModel, computeStats, parseTraining and findTrainingIssues: nothing but a one-line
// LoraFileError may come out, and no case may hang. The cases run in a child process so
// even a synchronous endless loop is caught and named. More cases: LORASCOPE_FUZZ_ITERATIONS=5000;
// another seed: LORASCOPE_FUZZ_SEED=n.
import assert from 'node:assert/strict';
import {mkdtemp, rm} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import {test} from 'node:test';
import {fileURLToPath} from 'node:url';
import {fork} from 'node:child_process';

const iterations = Number(process.env['LORASCOPE_FUZZ_ITERATIONS'] ?? 300);
const seed = Number(process.env['LORASCOPE_FUZZ_SEED'] ?? 20_240_601);
/** Generous: a case normally takes milliseconds; this only catches hangs. */
const perCaseMs = Number(process.env['LORASCOPE_FUZZ_CASE_MS'] ?? 30_000);

type WorkerMessage =
	| {type: 'start'; index: number; kind: string; caseSeed: number; description: string}
	| {type: 'failure'; index: number; kind: string; caseSeed: number; description: string; failure: string}
	| {type: 'done'};

test(`fuzz: ${iterations} mutated files never throw anything but LoraFileError and never hang`, async t => {
	const dir = await mkdtemp(path.join(os.tmpdir(), 'lorascope-fuzz-'));
	const failures: string[] = [];
	const started = performance.now();
	let current: WorkerMessage | undefined;
	try {
		const worker = fork(fileURLToPath(new URL('fixtures/fuzz-worker.ts', import.meta.url)), [dir, String(seed), String(iterations)], {
			execArgv: ['--import', 'tsx'],
			stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
		});
		let output = '';
		worker.stdout?.on('data', (chunk: Buffer) => {
			output += chunk.toString();
		});
		worker.stderr?.on('data', (chunk: Buffer) => {
			output += chunk.toString();
		});
		let watchdog: NodeJS.Timeout | undefined;
		const hang = await new Promise<string | undefined>((resolve, reject) => {
			const arm = (): void => {
				clearTimeout(watchdog);
				watchdog = setTimeout(() => {
					worker.kill('SIGKILL');
					resolve(current?.type === 'start'
						? `case ${current.index} (${current.kind}, seed ${current.caseSeed}: ${current.description}) ran over ${perCaseMs} ms`
						: 'worker stalled before the first case');
				}, perCaseMs);
			};

			arm();
			worker.on('message', (message: WorkerMessage) => {
				if (message.type === 'start') {
					current = message;
					arm();
				} else if (message.type === 'failure') {
					failures.push(`case ${message.index} (${message.kind}, seed ${message.caseSeed}: ${message.description}):\n${message.failure}`);
				} else {
					clearTimeout(watchdog);
					resolve(undefined);
				}
			});
			worker.on('error', error => {
				clearTimeout(watchdog);
				reject(error);
			});
			worker.on('exit', (code, signal) => {
				clearTimeout(watchdog);
				resolve(code === 0 ? undefined : `fuzz process exited with ${code ?? signal} during ${current?.type === 'start' ? `case ${current.index} (${current.description})` : 'set-up'}: ${output.slice(-2000)}`);
			});
		});
		worker.kill('SIGKILL');
		assert.equal(hang, undefined, hang);
	} finally {
		await rm(dir, {recursive: true, force: true});
	}

	t.diagnostic(`${iterations} cases (seed ${seed}) in ${((performance.now() - started) / 1000).toFixed(1)} s`);
	assert.deepEqual(failures, [], failures.slice(0, 5).join('\n\n'));
});
