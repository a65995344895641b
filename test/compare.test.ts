import {test} from 'node:test';
import assert from 'node:assert/strict';
import {mkdtemp, rm, writeFile} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {loadCompareInput, run as compareCommand} from '../source/commands/compare.js';
import {disposeEngineKernels, getEngineKernels} from '../source/engine/kernels/index.js';
import {
	compareFiles, compareTensorData, diffJson, diffMetadata, epochSeries, tensorDataFromHeaders, type CompareInput, type EpochEntry,
} from '../source/lora/compare.js';
import {decodeToFloat32} from '../source/lora/dtypes.js';
import {parseTraining} from '../source/lora/metadata.js';
import {loadLoraModel} from '../source/lora/model.js';
import {readHeader, TensorReader} from '../source/lora/safetensors.js';
import {generateSample, writeSample, type SampleOptions} from '../source/lora/samples.js';
import {computeStats} from '../source/lora/stats.js';
import type {LoraModel, LoraStats, SafetensorsHeader} from '../source/lora/types.js';

let directory = '';
test.before(async () => {
	directory = await mkdtemp(path.join(os.tmpdir(), 'lorascope-compare-'));
});
test.after(async () => {
	await rm(directory, {recursive: true, force: true});
});

async function sample(name: string, options: SampleOptions): Promise<string> {
	const file = path.join(directory, name);
	await writeSample(file, 'sd15-epoch', options);
	return file;
}

async function load(file: string): Promise<CompareInput> {
	const header = await readHeader(file);
	const reader = await TensorReader.open(header);
	try {
		const model = await loadLoraModel(header, async name => reader.read(name));
		return {header, model, training: parseTraining(header.metadata), stats: await computeStats(header, model)};
	} finally {
		await reader.close();
	}
}

/**
 * Reference norms computed here, without the stats code: for each kohya module, scale = alpha
 * tensor / rank (down's first dimension) and ‖scale·up·down‖_F² = scale²·Σ_ij (upᵀup)_ij (down downᵀ)_ij,
 * in float64 from the raw tensor bytes. Aggregated per block (block names from the model) as
 * sqrt(Σ norm²), and per UNet / TE.
 */
async function referenceNorms(input: CompareInput): Promise<{blocks: Map<string, number>; unet: number; te: number}> {
	const header = input.header;
	const reader = await TensorReader.open(header);
	const raw = async (name: string): Promise<Float32Array> => decodeToFloat32(await reader.readRaw(name), header.byName.get(name)!.dtype);
	const squares = new Map<string, number>();
	let unet = 0;
	let te = 0;
	for (const module of input.model.modules) {
		const downInfo = header.byName.get(`${module.name}.lora_down.weight`)!;
		const rank = downInfo.shape[0]!;
		const inDim = downInfo.shape.slice(1).reduce((a, b) => a * b, 1);
		const up = await raw(`${module.name}.lora_up.weight`);
		const down = await raw(`${module.name}.lora_down.weight`);
		const alpha = (await raw(`${module.name}.alpha`))[0]!;
		const outDim = up.length / rank;
		let sum = 0;
		for (let i = 0; i < rank; i++) {
			for (let j = 0; j < rank; j++) {
				let gu = 0;
				for (let row = 0; row < outDim; row++) {
					gu += up[(row * rank) + i]! * up[(row * rank) + j]!;
				}

				let gd = 0;
				for (let col = 0; col < inDim; col++) {
					gd += down[(i * inDim) + col]! * down[(j * inDim) + col]!;
				}

				sum += gu * gd;
			}
		}

		const square = ((alpha / rank) ** 2) * sum;
		squares.set(module.block, (squares.get(module.block) ?? 0) + square);
		if (module.name.startsWith('lora_te')) {
			te += square;
		} else {
			unet += square;
		}
	}

	await reader.close();
	return {blocks: new Map([...squares].map(([block, s]) => [block, Math.sqrt(s)])), unet: Math.sqrt(unet), te: Math.sqrt(te)};
}

function close(actual: number | null | undefined, expected: number, message: string): void {
	assert.ok(actual !== null && actual !== undefined, message);
	assert.ok(Math.abs(actual - expected) <= 1e-9 + (1e-6 * Math.abs(expected)), `${message}: ${actual} vs ${expected}`);
}

test('two epochs of one generated run: the differences the generator put in', async () => {
	const fileA = await sample('run-e2.safetensors', {epoch: 2});
	const fileB = await sample('run-e4.safetensors', {epoch: 4});
	const [a, b] = [await load(fileA), await load(fileB)];
	const tensorData = await compareTensorData(a.header, b.header);
	const comparison = compareFiles(a, b, {tensorData});

	// Metadata: exactly the keys whose generated values differ, with both raw values.
	const [generatedA, generatedB] = [await generateSample('sd15-epoch', {epoch: 2}), await generateSample('sd15-epoch', {epoch: 4})];
	const [metaA, metaB] = [generatedA.metadata, generatedB.metadata];
	const differing = Object.keys(metaA).filter(key => metaA[key] !== metaB[key]).sort();
	assert.ok(differing.includes('ss_epoch') && differing.includes('ss_steps'));
	assert.deepEqual(comparison.metadata.changed.map(c => c.key), differing);
	for (const change of comparison.metadata.changed) {
		assert.equal(change.a, metaA[change.key]);
		assert.equal(change.b, metaB[change.key]);
	}

	assert.equal(comparison.metadata.added.length + comparison.metadata.removed.length, 0);
	assert.equal(comparison.metadata.unchanged, Object.keys(metaA).length - differing.length);

	// Same run, same dataset: no tag changes.
	assert.ok(comparison.tags);
	assert.equal(comparison.tags.changes.length, 0);
	assert.equal(comparison.tags.unchanged, a.training.tags.length);

	// Rank and alpha: unchanged.
	assert.deepEqual(comparison.rankAlpha.rank, [2, 2]);
	assert.deepEqual(comparison.rankAlpha.alpha, [1, 1]);
	assert.equal(comparison.rankAlpha.modules.length, 0);

	// Tensor data: the tensors whose generated bytes differ, and no others.
	const [tensorsA, tensorsB] = [generatedA.tensors, generatedB.tensors];
	const expectedDiffering = tensorsA
		.filter((t, i) => !Buffer.from(t.data as Uint8Array).equals(Buffer.from(tensorsB[i]!.data as Uint8Array)))
		.map(t => t.name)
		.sort();
	assert.ok(expectedDiffering.length > 0 && expectedDiffering.length < tensorsA.length);
	assert.equal(comparison.tensors.identical, false);
	assert.equal(comparison.tensors.sameLayout, true);
	assert.deepEqual([...comparison.tensors.differing].sort(), expectedDiffering);

	// Norms per block and totals, against the reference computed here.
	const [refA, refB] = [await referenceNorms(a), await referenceNorms(b)];
	assert.ok(comparison.blocks && comparison.totals);
	assert.equal(comparison.blocks.length, refA.blocks.size);
	for (const block of comparison.blocks) {
		const x = refA.blocks.get(block.block)!;
		const y = refB.blocks.get(block.block)!;
		close(block.a, x, `${block.block} A`);
		close(block.b, y, `${block.block} B`);
		close(block.delta, y - x, `${block.block} delta`);
		close(block.relative, (y - x) / x, `${block.block} relative`);
		// Later epochs carry larger updates (the generator grows the spectrum with progress).
		assert.ok(block.delta! > 0, block.block);
	}

	close(comparison.totals.unet.delta, refB.unet - refA.unet, 'UNet delta');
	close(comparison.totals.te.relative, (refB.te - refA.te) / refA.te, 'TE relative');
	assert.deepEqual(comparison.blocks.map(bl => bl.blockOrder), [...comparison.blocks.map(bl => bl.blockOrder)].sort((p, q) => p - q));

	// Without a byte comparison, the data-area hashes decide (or nothing is known).
	assert.equal(compareFiles(a, b).tensors.basis, 'unknown');
	const same = tensorDataFromHeaders({...a, dataSha256: 'x'}, {...a, dataSha256: 'x'});
	assert.deepEqual([same.identical, same.basis], [true, 'data-sha256']);
	const other = tensorDataFromHeaders({...a, dataSha256: 'x'}, {...b, dataSha256: 'y'});
	assert.deepEqual([other.identical, other.basis], [false, 'data-sha256']);
	assert.equal((await compareTensorData(a.header, a.header)).identical, true);
});

test('a different rank: per-module rank changes and a layout difference', async () => {
	const a = await load(await sample('rank2.safetensors', {epoch: 4}));
	const b = await load(await sample('rank4.safetensors', {epoch: 4, rank: 4, alpha: 2}));
	const comparison = compareFiles(a, b, {tensorData: await compareTensorData(a.header, b.header)});
	assert.deepEqual(comparison.rankAlpha.rank, [2, 4]);
	assert.deepEqual(comparison.rankAlpha.alpha, [1, 2]);
	assert.deepEqual(comparison.rankAlpha.metadataDim, [2, 4]);
	assert.equal(comparison.rankAlpha.modules.length, a.model.modules.length);
	assert.ok(comparison.rankAlpha.modules.every(m => m.rankA === 2 && m.rankB === 4 && m.alphaA === 1 && m.alphaB === 2));
	assert.equal(comparison.tensors.sameLayout, false);
	assert.equal(comparison.tensors.identical, false);
	assert.equal(comparison.tensors.reshaped.length, 2 * a.model.modules.length, 'every up and down has another shape');
	assert.ok(comparison.metadata.changed.some(c => c.key === 'ss_network_dim' && c.a === '2' && c.b === '4'));
});

function fakeHeader(file: string, metadata: Record<string, string>): SafetensorsHeader {
	return {path: file, sizeBytes: 0, mtimeMs: 0, headerLength: 0, dataOffset: 8, tensors: [], byName: new Map(), metadata};
}

test('JSON fields are compared by content; tag counts per dir and merged', () => {
	const tagsA = {'10_aria': {aria: 38, smile: 10, hat: 3}, '4_casual': {aria: 21, smile: 2}};
	const tagsB = {'4_casual': {smile: 5, aria: 21}, '10_aria': {aria: 38, smile: 12, scarf: 4}};
	const a = {
		ss_network_args: '{"conv_dim": "4", "conv_alpha": "1"}',
		ss_tag_frequency: JSON.stringify(tagsA),
		ss_dataset_dirs: '{"10_aria": {"n_repeats": 10, "img_count": 38}}',
		only_a: 'x',
		same: 'y',
	};
	const b = {
		// Same content, other key order and spacing: not a change.
		ss_network_args: '{"conv_alpha":"1","conv_dim":"4"}',
		ss_tag_frequency: JSON.stringify(tagsB),
		ss_dataset_dirs: '{"10_aria": {"n_repeats": 12, "img_count": 38}}',
		only_b: 'z',
		same: 'y',
	};
	const diff = diffMetadata(a, b);
	assert.deepEqual(diff.added.map(c => c.key), ['only_b']);
	assert.deepEqual(diff.removed.map(c => c.key), ['only_a']);
	assert.deepEqual(diff.formattingOnly, ['ss_network_args']);
	assert.equal(diff.unchanged, 2);
	assert.deepEqual(diff.changed.map(c => c.key), ['ss_dataset_dirs', 'ss_tag_frequency']);
	assert.deepEqual(diff.changed[0]!.json, [{path: '10_aria.n_repeats', kind: 'changed', a: 10, b: 12}]);
	assert.deepEqual(diff.changed[1]!.json, [
		{path: '10_aria.hat', kind: 'removed', a: 3},
		{path: '10_aria.scarf', kind: 'added', b: 4},
		{path: '10_aria.smile', kind: 'changed', a: 10, b: 12},
		{path: '4_casual.smile', kind: 'changed', a: 2, b: 5},
	]);

	const model: LoraModel = {keyStyle: 'kohya', networkType: 'LoRA', arch: 'sd1', archEvidence: '', metadataArch: null, modules: [], rank: null, alpha: null, dtype: 'F16', unknownTensors: [], warnings: []};
	const input = (file: string, metadata: Record<string, string>): CompareInput => ({
		header: fakeHeader(file, metadata), model, training: parseTraining(metadata), stats: null,
	});
	const comparison = compareFiles(input('a', a), input('b', b));
	assert.ok(comparison.tags);
	// Expected per (dir, tag): B − A, absent = 0, largest |Δ| first.
	const expected = [
		{dir: '10_aria', tag: 'scarf', a: 0, b: 4, delta: 4},
		{dir: '10_aria', tag: 'hat', a: 3, b: 0, delta: -3},
		{dir: '4_casual', tag: 'smile', a: 2, b: 5, delta: 3},
		{dir: '10_aria', tag: 'smile', a: 10, b: 12, delta: 2},
	];
	assert.deepEqual(comparison.tags.changes, expected);
	assert.equal(comparison.tags.onlyInA, 1);
	assert.equal(comparison.tags.onlyInB, 1);
	assert.equal(comparison.tags.unchanged, 2);
	assert.deepEqual(comparison.tags.merged, [
		{tag: 'smile', a: 12, b: 17, delta: 5},
		{tag: 'scarf', a: 0, b: 4, delta: 4},
		{tag: 'hat', a: 3, b: 0, delta: -3},
	]);
	assert.equal(comparison.blocks, null);
	assert.equal(comparison.totals, null);
});

test('diffJson: arrays, type changes, deep nesting and the change cap', () => {
	assert.deepEqual(diffJson([1, 2, 3], [1, 5]), [{path: '[1]', kind: 'changed', a: 2, b: 5}, {path: '[2]', kind: 'removed', a: 3}]);
	assert.deepEqual(diffJson({a: {b: 1}}, {a: [1]}), [{path: 'a', kind: 'changed', a: {b: 1}, b: [1]}]);
	let deepA: unknown = 1;
	let deepB: unknown = 2;
	for (let i = 0; i < 10_000; i++) {
		deepA = {k: deepA};
		deepB = {k: deepB};
	}

	assert.equal(diffJson(deepA, deepB).length, 1, 'no recursion limit');
	const many = diffJson(Object.fromEntries(Array.from({length: 1000}, (_, i) => [`k${i}`, i])), {});
	assert.ok(many.length > 200 && many.length <= 1000);
	const capped = diffMetadata({x: JSON.stringify(Object.fromEntries(Array.from({length: 1000}, (_, i) => [`k${i}`, i])))}, {x: '{}'});
	assert.equal(capped.changed[0]!.json!.length, 200);
	assert.equal(capped.changed[0]!.jsonTruncated, true);
});

function entry(file: string, epoch: number | null, steps: number | null, unet: number, session = 's1'): EpochEntry {
	const stats: Pick<LoraStats, 'blocks' | 'unetNorm' | 'teNorm'> = {
		blocks: [{name: 'OUT03', blockOrder: 30, modules: 1, norm: unet / 2, mean: 0}, {name: 'IN01', blockOrder: 1, modules: 1, norm: unet / 3, mean: 0}],
		unetNorm: unet,
		teNorm: unet / 10,
	};
	return {header: {path: `/x/${file}`}, training: {epoch, steps, sessionId: session, outputName: 'run'}, stats};
}

test('epochSeries orders by epoch, then steps, then name, and warns about mixed runs', () => {
	const series = epochSeries([entry('c', 3, 30, 3), entry('a', 1, 10, 1), entry('b', 2, 20, 2)]);
	assert.deepEqual(series.points.map(p => p.epoch), [1, 2, 3]);
	assert.deepEqual(series.unet, [1, 2, 3]);
	assert.deepEqual(series.te, [0.1, 0.2, 0.3]);
	assert.deepEqual(series.blocks.map(b => b.block), ['IN01', 'OUT03']);
	assert.deepEqual(series.blocks[1]!.values, [0.5, 1, 1.5]);
	assert.deepEqual(series.warnings, []);

	const bySteps = epochSeries([entry('x', null, 200, 2), entry('y', null, 100, 1)]);
	assert.deepEqual(bySteps.points.map(p => p.name), ['y', 'x']);
	const byName = epochSeries([entry('run-000010.safetensors', null, null, 2), entry('run-000002.safetensors', null, null, 1)]);
	assert.deepEqual(byName.points.map(p => p.name), ['run-000002.safetensors', 'run-000010.safetensors']);
	const mixed = epochSeries([entry('a', 1, 10, 1, 's1'), entry('b', 1, 10, 1, 's2')]);
	assert.equal(mixed.warnings.length, 2);
	// A block missing in one file is null there.
	const sparse = epochSeries([entry('a', 1, 1, 1), {...entry('b', 2, 2, 2), stats: {blocks: [], unetNorm: 2, teNorm: 0}}]);
	assert.deepEqual(sparse.blocks[0]!.values, [1 / 3, null]);
});

test('epochSeries of generated epochs matches the reference norms', async () => {
	const files = [await sample('s-e3.safetensors', {epoch: 3}), await sample('s-e1.safetensors', {epoch: 1}), await sample('s-e2.safetensors', {epoch: 2})];
	const inputs = await Promise.all(files.map(load));
	const series = epochSeries(inputs.map(i => ({header: i.header, training: i.training, stats: i.stats!})));
	assert.deepEqual(series.points.map(p => p.epoch), [1, 2, 3]);
	const byEpoch = [inputs[1]!, inputs[2]!, inputs[0]!];
	for (const [index, input] of byEpoch.entries()) {
		const reference = await referenceNorms(input);
		close(series.unet[index], reference.unet, `UNet e${index + 1}`);
		close(series.te[index], reference.te, `TE e${index + 1}`);
		for (const row of series.blocks) {
			close(row.values[index], reference.blocks.get(row.block)!, `${row.block} e${index + 1}`);
		}
	}

	assert.ok(series.unet[0]! < series.unet[1]! && series.unet[1]! < series.unet[2]!);
	assert.deepEqual(series.warnings, []);
});

async function capture(run: () => Promise<number>): Promise<{code: number; stdout: string; stderr: string}> {
	const out: string[] = [];
	const err: string[] = [];
	const originalOut = process.stdout.write.bind(process.stdout);
	const originalErr = process.stderr.write.bind(process.stderr);
	process.stdout.write = ((chunk: string | Uint8Array) => {
		out.push(String(chunk));
		return true;
	}) as typeof process.stdout.write;
	process.stderr.write = ((chunk: string | Uint8Array) => {
		err.push(String(chunk));
		return true;
	}) as typeof process.stderr.write;
	try {
		return {code: await run(), stdout: out.join(''), stderr: err.join('')};
	} finally {
		process.stdout.write = originalOut;
		process.stderr.write = originalErr;
	}
}

test('compare\'s large-file path (onnxruntime kernels, float32 Grams): norms match the float64 reference', async () => {
	const file = await sample('ort-e3.safetensors', {epoch: 3});
	const kernels = await getEngineKernels('cpu');
	try {
		assert.equal(kernels.backend, 'onnxruntime');
		const input = await loadCompareInput(file, kernels);
		const reference = await referenceNorms(input);
		const near = (actual: number | undefined, expected: number, what: string) => {
			assert.ok(actual !== undefined && Math.abs(actual - expected) <= 1e-5 * expected, `${what}: ${actual} vs ${expected}`);
		};

		near(input.stats?.unetNorm, reference.unet, 'UNet');
		near(input.stats?.teNorm, reference.te, 'TE');
		assert.equal(input.stats?.blocks.length, reference.blocks.size);
		for (const block of input.stats?.blocks ?? []) {
			near(block.norm, reference.blocks.get(block.name)!, block.name);
		}

		assert.equal((await loadCompareInput(file, null)).stats, null, 'no kernels: no norms (--no-stats)');
	} finally {
		await disposeEngineKernels();
	}
});

test('lorascope compare: text, JSON, epochs and exit codes', async () => {
	const fileA = await sample('cli-e1.safetensors', {epoch: 1});
	const fileB = await sample('cli-e2.safetensors', {epoch: 2});
	const text = await capture(async () => compareCommand([fileA, fileB]));
	assert.equal(text.code, 0, text.stderr);
	assert.match(text.stdout, /Tensor data: differs/);
	assert.match(text.stdout, /~ ss_epoch: 1 → 2/);
	assert.match(text.stdout, /UNet total/);

	const json = await capture(async () => compareCommand([fileA, fileB, '--json']));
	const parsed = JSON.parse(json.stdout) as {metadata: {changed: Array<{key: string}>}; totals: {unet: {delta: number}}};
	assert.ok(parsed.metadata.changed.some(c => c.key === 'ss_epoch'));
	const reference = [await referenceNorms(await load(fileA)), await referenceNorms(await load(fileB))];
	close(parsed.totals.unet.delta, reference[1]!.unet - reference[0]!.unet, 'JSON UNet delta');

	const epochs = await capture(async () => compareCommand([fileB, fileA, '--epochs']));
	assert.equal(epochs.code, 0, epochs.stderr);
	assert.match(epochs.stdout, /block\s+e1\s+e2/);
	assert.match(epochs.stdout, /UNet ‖ΔW‖ across epochs/);
	assert.match(epochs.stdout, /┤/);
	const epochsJson = JSON.parse((await capture(async () => compareCommand([fileB, fileA, '--epochs', '--json']))).stdout) as {points: Array<{epoch: number}>; unet: number[]};
	assert.deepEqual(epochsJson.points.map(p => p.epoch), [1, 2]);
	close(epochsJson.unet[0], reference[0]!.unet, 'epochs JSON');

	const missing = await capture(async () => compareCommand([fileA, path.join(directory, 'nope.safetensors')]));
	assert.equal(missing.code, 1);
	assert.match(missing.stderr, /nope\.safetensors: file not found/);
	const hostile = path.join(directory, 'bad\u001B[31m.safetensors');
	await writeFile(hostile, 'not a lora');
	const bad = await capture(async () => compareCommand([fileA, hostile]));
	assert.equal(bad.code, 1);
	assert.equal(bad.stderr.includes('\u001B'), false, 'file names are sanitised');
	assert.equal((await capture(async () => compareCommand([fileA]))).code, 2);
	assert.equal((await capture(async () => compareCommand([fileA, fileB, '--bogus']))).code, 2);
});
