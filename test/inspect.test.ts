import assert from 'node:assert/strict';
import {execFile} from 'node:child_process';
import {mkdir, mkdtemp, readFile, rm, symlink, writeFile} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {after, before, test} from 'node:test';
import {fileURLToPath} from 'node:url';
import {promisify} from 'node:util';
import {parseInspectArgs, runInspect, type InspectIO} from '../source/commands/inspect.js';
import {decodeToFloat32} from '../source/lora/dtypes.js';
import {listLoraFiles} from '../source/lora/scan.js';
import {writeSample} from '../source/lora/samples.js';
import {writeSafetensorsAtomic} from '../source/lora/writer.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let dir: string;
let folder: string;

function collector(cwd: string): InspectIO & {out: string; err: string} {
	const io = {
		out: '',
		err: '',
		cwd,
		columns: 100,
		stdout(text: string) {
			io.out += text;
		},
		stderr(text: string) {
			io.err += text;
		},
	};
	return io;
}

type JsonItem = Record<string, unknown> & {path: string; error: string | null};

before(async () => {
	dir = await mkdtemp(path.join(os.tmpdir(), 'lorascope-inspect-'));
	folder = path.join(dir, 'loras');
	await mkdir(path.join(folder, 'sub'), {recursive: true});
	await writeSample(path.join(folder, 'kestrel.safetensors'), 'sd15-lokr');
	await writeSample(path.join(folder, 'sub', 'aria.safetensors'), 'sd15-lora', {rank: 2, alpha: 1});
	await writeSample(path.join(folder, 'flux_peft.safetensors'), 'flux-peft', {rank: 1, alpha: 2});
	// A header that claims more bytes than the file has.
	const corrupt = Buffer.alloc(64);
	corrupt.writeBigUInt64LE(1_000_000n);
	corrupt.write('{"a":', 8);
	await writeFile(path.join(folder, 'broken.safetensors'), corrupt);
	// A pickle (protocol 2 magic): listed and reported, never unpickled.
	await writeFile(path.join(folder, 'old.pt'), Buffer.from([0x80, 0x02, 0x7d, 0x71, 0x00, 0x2e]));
	// Not a candidate: ignored.
	await writeFile(path.join(folder, 'notes.txt'), 'hello');
});

after(async () => {
	await rm(dir, {recursive: true, force: true});
});

test('--json on a folder: one object per file, failures one line, exit 1', async () => {
	const io = collector(dir);
	const code = await runInspect(['--json', folder], io);
	assert.equal(code, 1);
	const items = JSON.parse(io.out) as JsonItem[];
	const names = items.map(item => path.relative(folder, item.path)).sort();
	assert.deepEqual(names, ['broken.safetensors', 'flux_peft.safetensors', 'kestrel.safetensors', 'old.pt', path.join('sub', 'aria.safetensors')].sort());
	const byName = new Map(items.map(item => [path.basename(item.path), item]));
	for (const name of ['broken.safetensors', 'old.pt']) {
		const item = byName.get(name)!;
		assert.equal(typeof item.error, 'string', name);
		assert.doesNotMatch(item.error!, /\n/);
		assert.ok(item.error!.length > 5);
		assert.equal(item.keyStyle, null);
		assert.equal(item.metadata, null);
	}

	assert.match(byName.get('old.pt')!.error!, /pickle/);
	const aria = byName.get('aria.safetensors')!;
	assert.equal(aria.error, null);
	assert.equal(aria.keyStyle, 'kohya');
	assert.equal(aria.networkType, 'LoRA');
	assert.equal(aria.arch, 'sd1');
	assert.equal(aria.rank, 2);
	assert.equal(aria.alpha, 1);
	assert.equal(aria.moduleCount, 264);
	const metadata = aria.metadata as Record<string, string>;
	assert.equal(metadata['ss_network_dim'], '2');
	const training = aria.training as {networkModule: string; epoch: number};
	assert.equal(training.networkModule, 'networks.lora');
	assert.equal(training.epoch, 10);
	// tags / dataset come from the raw JSON, checked against it here.
	const tagFrequency = JSON.parse(metadata['ss_tag_frequency']!) as Record<string, Record<string, number>>;
	const tags = aria.tags as Array<{dir: string; tag: string; count: number}>;
	assert.equal(tags.length, Object.values(tagFrequency).reduce((sum, counts) => sum + Object.keys(counts).length, 0));
	for (const tag of tags) {
		assert.equal(tagFrequency[tag.dir]![tag.tag], tag.count);
	}

	const dirs = JSON.parse(metadata['ss_dataset_dirs']!) as Record<string, {n_repeats: number; img_count: number}>;
	const dataset = aria.dataset as Array<{dir: string; repeats: number; images: number}>;
	assert.deepEqual(dataset.map(d => [d.dir, d.repeats, d.images]).sort(), Object.entries(dirs).map(([d, v]) => [d, v.n_repeats, v.img_count]).sort());
	assert.equal(aria['weights'], undefined, 'no weights without -w');
	const peft = byName.get('flux_peft.safetensors')!;
	assert.equal(peft.keyStyle, 'peft');
	assert.equal(peft.arch, 'flux');
	assert.equal(peft.alpha, 2);
	assert.equal(byName.get('kestrel.safetensors')!.networkType, 'LoKr');
});

test('-w --json adds weights, modules and blocks that agree with the tensors', async () => {
	const file = path.join(folder, 'sub', 'aria.safetensors');
	const io = collector(dir);
	assert.equal(await runInspect(['-w', '--json', file], io), 0);
	const [item] = JSON.parse(io.out) as Array<JsonItem & {
		weights: Record<string, {magnitude: number; strength: number} | null>;
		modules: Array<{name: string; block: string; rank: number; alpha: number; norm: number | null}>;
		blocks: Array<{name: string; modules: number; norm: number}>;
	}>;
	assert.ok(item);
	assert.equal(item.modules.length, 264);
	assert.equal(item.weights['unetConv'], null);
	assert.ok(item.weights['unet']!.magnitude > 0 && item.weights['te']!.strength > 0);
	// One module recomputed from its tensors: ‖(alpha/r)·up·down‖.
	const {readHeader, TensorReader} = await import('../source/lora/safetensors.js');
	const header = await readHeader(file);
	const reader = await TensorReader.open(header);
	const name = 'lora_unet_up_blocks_1_attentions_2_transformer_blocks_0_ff_net_0_proj';
	const up = decodeToFloat32(await reader.readRaw(`${name}.lora_up.weight`), 'F16');
	const down = decodeToFloat32(await reader.readRaw(`${name}.lora_down.weight`), 'F16');
	await reader.close();
	const [out, rank] = header.byName.get(`${name}.lora_up.weight`)!.shape as [number, number];
	const inDim = down.length / rank;
	let squares = 0;
	for (let i = 0; i < out; i++) {
		for (let j = 0; j < inDim; j++) {
			let sum = 0;
			for (let k = 0; k < rank; k++) {
				sum += up[(i * rank) + k]! * down[(k * inDim) + j]!;
			}

			squares += sum * sum;
		}
	}

	const module = item.modules.find(m => m.name === name)!;
	assert.equal(module.block, 'OUT05');
	assert.equal(module.rank, 2);
	assert.equal(module.alpha, 1);
	assert.ok(Math.abs(module.norm! - (0.5 * Math.sqrt(squares))) < 1e-9 * module.norm!);
	// Blocks cover every module with a norm.
	assert.equal(item.blocks.reduce((sum, b) => sum + b.modules, 0), item.modules.filter(m => m.norm !== null).length);
	const block = item.blocks.find(b => b.name === 'OUT05')!;
	const members = item.modules.filter(m => m.block === 'OUT05');
	assert.ok(Math.abs(block.norm - Math.sqrt(members.reduce((s, m) => s + (m.norm! ** 2), 0))) < 1e-12);
});

test('usage errors exit 2 and print the usage', async () => {
	for (const argv of [[], ['--bogus', folder], ['-x'], ['--json=3', folder]]) {
		const io = collector(dir);
		assert.equal(await runInspect(argv, io), 2, argv.join(' '));
		assert.match(io.err, /Usage: lorascope inspect/);
		assert.equal(io.out, '');
	}

	const help = collector(dir);
	assert.equal(await runInspect(['--help'], help), 0);
	assert.match(help.out, /--weights/);
	assert.deepEqual(parseInspectArgs(['-wtd', 'a', 'b']), {
		kind: 'ok',
		paths: ['a', 'b'],
		flags: {weights: true, tags: true, dataset: true, saveMeta: false, json: false, hash: false},
	});
	assert.equal((parseInspectArgs(['--save_meta', 'x']) as {flags: {saveMeta: boolean}}).flags.saveMeta, true);
});

test('a missing path is a failed file, not a usage error', async () => {
	const io = collector(dir);
	const code = await runInspect(['--json', path.join(dir, 'nope.safetensors'), path.join(folder, 'kestrel.safetensors')], io);
	assert.equal(code, 1);
	const items = JSON.parse(io.out) as JsonItem[];
	assert.equal(items.length, 2);
	assert.equal(items[0]!.error, 'file not found');
	assert.equal(items[1]!.error, null);
});

test('text output is sanitised and follows lora-inspector\'s sections', async () => {
	const file = path.join(dir, 'hostile.safetensors');
	const m = 'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q';
	await writeSafetensorsAtomic(file, [
		{name: `${m}.alpha`, dtype: 'F32', shape: [], data: new Uint8Array(Float32Array.of(1).buffer)},
		{name: `${m}.lora_down.weight`, dtype: 'F32', shape: [1, 4], data: new Uint8Array(Float32Array.of(1, 2, 3, 4).buffer)},
		{name: `${m}.lora_up.weight`, dtype: 'F32', shape: [4, 1], data: new Uint8Array(Float32Array.of(1, 0, 0, 0).buffer)},
	], {
		ss_network_module: 'networks.lora',
		ss_output_name: 'evil\u001B]0;pwned\u0007name\u001B[2J',
		ss_tag_frequency: JSON.stringify({'1_x': {'\u001B[31mred': 3, tag: 2}}),
		ss_dataset_dirs: JSON.stringify({'1_x\u009B6n': {n_repeats: 1, img_count: 3}}),
	}, {overwrite: true});
	const io = collector(dir);
	assert.equal(await runInspect(['-w', '-t', '-d', file], io), 0);
	assert.doesNotMatch(io.out, /[\u0000-\u0008\u000B-\u001F\u007F-\u009F]/);
	assert.match(io.out, /UNet weight average magnitude: /);
	assert.match(io.out, /Tags/);
	assert.match(io.out, /Dataset dirs: 1/);
	assert.match(io.out, /-{22}/);
	// lora-inspector's figures: magnitude of [1,2,3,4] and [1,0,0,0] averaged: (√30 + 1) / 2.
	assert.match(io.out, new RegExp(`UNet weight average magnitude: ${String((Math.sqrt(30) + 1) / 2).replace('.', '\\.')}`));
	const json = collector(dir);
	await runInspect(['--json', file], json);
	assert.doesNotMatch(json.out, /[\u0000-\u0008\u000B-\u001F\u007F-\u009F]/);
	const [item] = JSON.parse(json.out) as Array<{metadata: Record<string, string>}>;
	assert.equal(item!.metadata['ss_output_name'], 'evil\u001B]0;pwned\u0007name\u001B[2J', 'JSON keeps the raw value, escaped');
});

test('-s writes meta/<stem>.json with raw and parsed metadata', async () => {
	const cwd = path.join(dir, 'save');
	await mkdir(cwd);
	const io = collector(cwd);
	assert.equal(await runInspect(['-s', path.join(folder, 'kestrel.safetensors')], io), 0);
	const saved = JSON.parse(await readFile(path.join(cwd, 'meta', 'kestrel.json'), 'utf8')) as {metadata: Record<string, string>; training: {networkModule: string}};
	assert.equal(saved.metadata['ss_network_module'], 'lycoris.kohya');
	assert.equal(saved.training.networkModule, 'lycoris.kohya');
	assert.match(io.out, /Saved metadata to meta\/kestrel\.json/);
});

test('folder scan survives symlink loops and lists pickles', async () => {
	const loop = path.join(dir, 'looped');
	await mkdir(path.join(loop, 'a'), {recursive: true});
	await writeFile(path.join(loop, 'a', 'x.safetensors'), 'x');
	await writeFile(path.join(loop, 'a', 'y.ckpt'), 'x');
	await symlink(loop, path.join(loop, 'a', 'back'));
	await symlink(path.join(loop, 'missing.safetensors'), path.join(loop, 'dangling.safetensors'));
	const errors: string[] = [];
	const files = await listLoraFiles([loop], {onError: p => errors.push(p)});
	assert.deepEqual(files.map(f => path.relative(loop, f)), [path.join('a', 'x.safetensors'), path.join('a', 'y.ckpt'), 'dangling.safetensors'].sort());
});

test('the CLI entry point returns the exit codes', {timeout: 60_000}, async () => {
	const run = promisify(execFile);
	const cli = path.join(repoRoot, 'source', 'cli.tsx');
	const good = await run(process.execPath, ['--import', 'tsx', cli, 'inspect', '--json', path.join(folder, 'kestrel.safetensors')], {cwd: repoRoot});
	assert.equal((JSON.parse(good.stdout) as JsonItem[])[0]!.error, null);
	await assert.rejects(run(process.execPath, ['--import', 'tsx', cli, 'inspect', path.join(folder, 'broken.safetensors')], {cwd: repoRoot}), (error: {code: number}) => error.code === 1);
	await assert.rejects(run(process.execPath, ['--import', 'tsx', cli, 'inspect', '--nope'], {cwd: repoRoot}), (error: {code: number}) => error.code === 2);
});
