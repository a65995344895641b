// SIGKILL during a write must never cost the user a file: `lorascope meta set` (metadata save,
// in place and to another name) and `lorascope resize` (the engine worker writing the output)
// are killed, process group and all, the moment their temp file appears and again half-way
// through the write. Afterwards the source is byte-identical, nothing exists under the target
// name, and the leftovers carry tempMarker and are removed by cleanStaleTempFiles.
import assert from 'node:assert/strict';
import {spawn} from 'node:child_process';
import {createHash} from 'node:crypto';
import {watch} from 'node:fs';
import {mkdtemp, readFile, readdir, rm, stat, writeFile} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import {after, before, test} from 'node:test';
import {fileURLToPath} from 'node:url';
import {writeSample} from '../source/lora/samples.js';
import {cleanStaleTempFiles, tempMarker} from '../source/lora/writer.js';
import {goodLora, safetensorsFile} from './fixtures/safetensors-builder.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let root: string;
let bigLora: Buffer;
let resizeSource: string;

before(async () => {
	root = await mkdtemp(path.join(os.tmpdir(), 'lorascope-crash-'));
	// 128 MB: a small LoRA plus one large tensor of patterned bytes, so the copy takes a while.
	const lora = goodLora(200);
	const filler = new Uint8Array(128 * 1024 * 1024);
	const words = new Uint32Array(filler.buffer);
	for (let i = 0; i < words.length; i++) {
		words[i] = Math.imul(i, 2_654_435_761) >>> 0;
	}

	lora.tensors.push({name: 'lora_unet_filler.weight', dtype: 'U8', shape: [filler.length], data: filler});
	bigLora = safetensorsFile(lora.tensors, lora.metadata);
	resizeSource = path.join(root, 'resize-source.safetensors');
	await writeSample(resizeSource, 'sd15-lora', {rank: 32, hashes: false});
});

after(async () => {
	await rm(root, {recursive: true, force: true});
});

const sha256 = async (file: string): Promise<string> => createHash('sha256').update(await readFile(file)).digest('hex');

type Trigger = {kind: 'temp-created'} | {kind: 'written'; bytes: number};

/**
 * Run the CLI in its own process group; when a temp file appears in `folder` (and, for
 * 'written', has grown to `bytes`), SIGKILL the whole group (CLI and engine worker).
 */
async function killDuringWrite(args: string[], folder: string, trigger: Trigger): Promise<{killed: boolean; temp: string | undefined; output: string}> {
	const child = spawn(process.execPath, ['--import', 'tsx', 'source/cli.tsx', ...args], {
		cwd: repoRoot,
		detached: true,
		stdio: ['ignore', 'pipe', 'pipe'],
	});
	let output = '';
	child.stdout.on('data', (chunk: Buffer) => {
		output += chunk.toString();
	});
	child.stderr.on('data', (chunk: Buffer) => {
		output += chunk.toString();
	});
	let killed = false;
	let temp: string | undefined;
	const killGroup = (): void => {
		if (!killed && child.pid !== undefined) {
			killed = true;
			try {
				process.kill(-child.pid, 'SIGKILL');
			} catch {
				// Already gone.
			}
		}
	};

	let poll: NodeJS.Timeout | undefined;
	const watcher = watch(folder, (_event, name) => {
		if (temp || !name?.includes(tempMarker)) {
			return;
		}

		temp = path.join(folder, name);
		if (trigger.kind === 'temp-created') {
			killGroup();
			return;
		}

		poll = setInterval(() => {
			void stat(temp!).then(info => {
				if (info.size >= trigger.bytes) {
					killGroup();
				}
			}, () => undefined);
		}, 1);
	});
	const exit = await new Promise<{code: number | null; signal: NodeJS.Signals | null}>(resolve => {
		child.on('exit', (code, signal) => {
			resolve({code, signal});
		});
	});
	clearInterval(poll);
	watcher.close();
	// The engine worker is in the same group: wait until every member is gone (and reaped, or
	// cleanStaleTempFiles would rightly think the writer still alive).
	killGroup();
	for (let waited = 0; waited < 10_000 && groupAlive(child.pid); waited += 20) {
		await new Promise(resolve => {
			setTimeout(resolve, 20);
		});
	}

	return {killed: killed && exit.signal === 'SIGKILL', temp, output};
}

function groupAlive(pid: number | undefined): boolean {
	if (pid === undefined) {
		return false;
	}

	try {
		process.kill(-pid, 0);
		return true;
	} catch {
		return false;
	}
}

async function assertCrashSafe(folder: string, source: string, sourceHash: string, target: string, label: string): Promise<void> {
	assert.equal(await sha256(source), sourceHash, `${label}: source byte-identical`);
	await assert.rejects(stat(target === source ? `${target}.never` : target), {code: 'ENOENT'}, `${label}: nothing under the target name`);
	const names = await readdir(folder);
	const others = names.filter(name => path.join(folder, name) !== source && !name.endsWith('.safetensors.keep'));
	for (const name of others) {
		assert.ok(name.includes(tempMarker), `${label}: only temp files left besides the source, found ${JSON.stringify(name)}`);
	}

	const removed = await cleanStaleTempFiles(folder, 0);
	assert.equal(removed.length, others.length, `${label}: cleanStaleTempFiles removes every leftover`);
	assert.deepEqual((await readdir(folder)).filter(name => name.includes(tempMarker)), []);
}

for (const [mode, trigger] of [['as its temp file appears', {kind: 'temp-created'}], ['half-way through the copy', {kind: 'written', bytes: 64 * 1024 * 1024}]] as const) {
	test(`SIGKILL during a metadata save ${mode}: source intact, no target`, async t => {
		const folder = await mkdtemp(path.join(root, 'meta-'));
		const source = path.join(folder, 'lora.safetensors');
		await writeFile(source, bigLora);
		const sourceHash = await sha256(source);

		const inPlace = await killDuringWrite(['meta', 'set', source, '--key', 'ss_output_name', '--value', 'edited'], folder, trigger);
		t.diagnostic(`in place: killed=${inPlace.killed} temp=${inPlace.temp ? path.basename(inPlace.temp) : 'none'}`);
		assert.ok(inPlace.killed, `the save finished before it could be killed (make the file larger): ${inPlace.output}`);
		await assertCrashSafe(folder, source, sourceHash, source, 'in place');

		const target = path.join(folder, 'copy.safetensors');
		const copy = await killDuringWrite(['meta', 'set', source, '--key', 'ss_output_name', '--value', 'edited', '-o', target], folder, trigger);
		assert.ok(copy.killed, `the save finished before it could be killed: ${copy.output}`);
		await assertCrashSafe(folder, source, sourceHash, target, 'to another name');
	});
}

for (const [mode, trigger] of [['as its temp file appears', {kind: 'temp-created'}], ['half-way through the output', {kind: 'written', bytes: 24 * 1024 * 1024}]] as const) {
	test(`SIGKILL during resize output ${mode}: source intact, no output`, async t => {
		const folder = await mkdtemp(path.join(root, 'resize-'));
		const source = path.join(folder, 'lora.safetensors');
		await writeFile(source, await readFile(resizeSource));
		const sourceHash = await sha256(source);
		// fp32 output at full rank (~70 MB) keeps the write long enough to interrupt.
		const result = await killDuringWrite(['resize', source, '--rank', '32', '--dtype', 'fp32', '--device', 'cpu'], folder, trigger);
		t.diagnostic(`killed=${result.killed} temp=${result.temp ? path.basename(result.temp) : 'none'}`);
		assert.ok(result.killed, `the resize finished before it could be killed: ${result.output}`);
		await assertCrashSafe(folder, source, sourceHash, path.join(folder, 'lora_rank32.safetensors'), 'resize');
	});
}
