/** @jsxRuntime automatic */
// The Resize view rendered at an explicit terminal size on a generated SD1.5 LoRA, with the real
// engine jobs in-process: the figures after → match the test's own arithmetic on a fresh decomposition
// (plain-JS kernels, not the engine's cache), w writes a file that re-reads with the planned ranks and
// a dense float64 ΔW error equal to what the view showed, an existing file is never overwritten
// without a y, Esc cancels, a reopen is instant, and c compares the output with its source.
import assert from 'node:assert/strict';
import {stat} from 'node:fs/promises';
import path from 'node:path';
import {after, before, test} from 'node:test';
import {Root} from '../source/app.js';
import {decomposeHeader} from '../source/engine/jobs/decompose.js';
import {jsKernels} from '../source/engine/kernels/js-kernels.js';
import {loadLoraModel} from '../source/lora/model.js';
import {outputPath, planResize, preparePlanInput} from '../source/lora/resize-plan.js';
import {readHeader, TensorReader} from '../source/lora/safetensors.js';
import type {DecompositionSummary} from '../source/lora/types.js';
import type {TerminalEnv} from '../source/state/types.js';
import {sample, tempFolder} from './helpers/fixtures.js';
import {keys, plain, renderInTerminal, type Rendered} from './helpers/render.js';
import {toolEngine, type ToolEngine} from './helpers/tool-engine.js';

const env: TerminalEnv = {unicode: true, color: false};
let folder: {dir: string; remove: () => Promise<void>};
let aria: string;
let fresh: DecompositionSummary;
const open: Rendered[] = [];

before(async () => {
	folder = await tempFolder('lorascope-resize-view-');
	aria = await sample(folder.dir, 'aria.safetensors', 'sd15-lora', {rank: 8, alpha: 4});
	// The test's own decomposition: plain-JS kernels, straight from the file.
	fresh = (await decomposeHeader(await readHeader(aria), {kernels: jsKernels, device: 'cpu'})).summary;
});

after(async () => {
	for (const r of open) {
		r.unmount();
	}

	await folder.remove();
});

function start(columns = 120, rows = 40, extra: {outDir?: string} = {}): Rendered & {engine: ToolEngine} {
	const engine = toolEngine();
	const rendered = renderInTerminal(<Root folder={folder.dir} env={env} engine={() => engine} watch={false} resizeOutDir={extra.outDir} />, {columns, rows});
	open.push(rendered);
	return {...rendered, engine};
}

function lineWith(frame: string, needle: string | RegExp): string {
	const found = plain(frame).split('\n').find(l => (typeof needle === 'string' ? l.includes(needle) : needle.test(l)));
	assert.ok(found, `no line with ${String(needle)} in:\n${plain(frame)}`);
	return found;
}

const pct = (fraction: number): string => `${(fraction * 100).toFixed(2)}%`;

/** Kept rank and kept share of ‖ΔW‖_F for `--rank k`, by hand from the singular values. */
function rankFigures(summary: DecompositionSummary, k: number, block?: string): {before: number; after: number; kept: number} {
	let before = 0;
	let after = 0;
	let kept2 = 0;
	let all2 = 0;
	for (const m of summary.modules) {
		if (!m.resizable || (block !== undefined && m.block !== block)) {
			continue;
		}

		const values = m.singularValues.filter(v => v > 0);
		before += m.rank ?? 0;
		after += Math.min(k, values.length);
		for (const [i, v] of values.entries()) {
			all2 += v * v;
			kept2 += i < k ? v * v : 0;
		}
	}

	return {before, after, kept: Math.sqrt(kept2 / all2)};
}

const loaded = (frame: string): boolean => plain(frame).includes('aria.safetensors') && plain(frame).includes('8/4');

/** Waits for the list, then selects aria (the oldest file: outputs of earlier tests sort above it). */
async function openAria(app: Rendered): Promise<void> {
	await app.waitFor(loaded);
	app.press('G');
	await app.waitFor(f => /aria\.safetensors +\(\d+ headers? read/.test(plain(f)) || plain(f).includes('│File                   aria.safetensors'));
}

test('120x40: r decomposes with progress, → re-plans; the figures match a fresh decomposition', async () => {
	const app = start();
	await openAria(app);
	app.press('r');
	let frame = await app.waitFor(f => plain(f).includes('decomposed on cpu'), 20_000);
	assert.ok(app.engine.started.some(job => job.kind === 'decompose'));
	assert.match(lineWith(frame, 'Param'), /rank 4/);
	app.press(keys.right);
	frame = await app.waitFor(f => /Param +rank 5/.test(plain(f)));
	const total = rankFigures(fresh, 5);
	assert.match(lineWith(frame, 'Kept'), new RegExp(`‖ΔW‖ ${pct(total.kept).replace('.', '\\.')} .* total rank ${total.before} → ${total.after}`));
	const in01 = rankFigures(fresh, 5, 'IN01');
	const in01Line = lineWith(frame, /│IN01 /);
	assert.ok(in01Line.includes(pct(in01.kept)), `${in01Line} has ${pct(in01.kept)}`);
	assert.match(in01Line, /8\.0 →.* 5\.0 /);
	assert.match(lineWith(frame, 'Output'), /aria_rank5\.safetensors +≈ [\d.]+ MiB of [\d.]+ MiB +\([\d.]+× smaller\)/);
	const lines = plain(frame).split('\n');
	assert.equal(lines.length, 39, 'the root is rows-1 tall');
	assert.ok(lines.every(l => l.length <= 120));
	assert.match(lineWith(frame, 'esc back'), /←\/→ adjust .*w write/);

	// sv_fro: the engine's plan equals planResize on the fresh spectra.
	app.press('m', 'm');
	frame = await app.waitFor(f => /Param +sv_fro 0\.9/.test(plain(f)));
	const plan = planResize(preparePlanInput(fresh.modules), {method: 'sv_fro', param: 0.9});
	assert.match(lineWith(frame, 'Kept'), new RegExp(`‖ΔW‖ ${pct(plan.totals.froRetained).replace('.', '\\.')} · error ${pct(plan.totals.error).replace('.', '\\.')} · total rank ${plan.totals.rankBefore} → ${plan.totals.rankAfter}`));
	assert.match(lineWith(frame, 'Modules'), new RegExp(`${plan.totals.resized} resized · ${plan.totals.kept} unchanged · ${plan.totals.removed} removed · 0 copied`));

	// Closing and reopening the same file is instant: no second decomposition.
	app.press(keys.escape);
	await app.waitFor(f => plain(f).includes('↵ open'));
	app.press('r');
	await app.waitFor(f => plain(f).includes('decomposed on cpu') && /Param +sv_fro 0\.9/.test(plain(f)));
	assert.equal(app.engine.started.filter(job => job.kind === 'decompose').length, 1);
});

test('w writes next to the source; the file re-reads with the planned ranks and the shown error', async () => {
	const app = start();
	await openAria(app);
	app.press('r');
	await app.waitFor(f => plain(f).includes('decomposed on cpu'), 20_000);
	app.press(keys.right);
	let frame = await app.waitFor(f => /Param +rank 5/.test(plain(f)));
	const estimate = /≈ ([\d.]+) MiB/.exec(lineWith(frame, 'Output'))![1]!;
	const worst = lineWith(frame.split('Worst modules by error')[1] ?? '', /kept +[\d.]+%/);
	const [, worstName, worstKept] = /^│ +(\S+) .* kept +([\d.]+)%/.exec(worst) ?? [];
	assert.ok(worstName && worstKept, worst);
	app.press('w');
	frame = await app.waitFor(f => plain(f).includes('Wrote '), 30_000);
	const target = outputPath(aria, {method: 'rank', rank: 5});
	assert.match(lineWith(frame, 'Wrote'), /aria_rank5\.safetensors/);
	const written = await readHeader(target);
	// The estimate shown before writing was within 2% of the real size.
	assert.ok(Math.abs((Number(estimate) * 1024 * 1024) - written.sizeBytes) / written.sizeBytes < 0.02, `${estimate} MiB vs ${written.sizeBytes} bytes`);
	const reader = await TensorReader.open(written);
	const source = await TensorReader.open(await readHeader(aria));
	try {
		const model = await loadLoraModel(written, async name => reader.read(name));
		const byName = new Map(model.modules.map(m => [m.name, m]));
		for (const m of fresh.modules) {
			const n = m.singularValues.filter(v => v > 0).length;
			assert.equal(byName.get(m.name)?.rank ?? 0, Math.min(5, n), m.name);
		}

		// Dense float64 ΔW of the worst module, before and after: ‖ΔW₅‖/‖ΔW‖ is the kept share shown.
		const dense = async (r: TensorReader, name: string): Promise<Float64Array> => {
			const module = (await loadLoraModel(r === reader ? written : await readHeader(aria), async key => r.read(key))).modules.find(x => x.name === name)!;
			const up = await r.read(module.tensors['up']!);
			const down = await r.read(module.tensors['down']!);
			const rank = module.rank!;
			const out = new Float64Array(module.outDim * module.inDim);
			for (let i = 0; i < module.outDim; i++) {
				for (let k = 0; k < rank; k++) {
					const u = up[(i * rank) + k]! * module.scale;
					for (let j = 0; j < module.inDim; j++) {
						out[(i * module.inDim) + j]! += u * down[(k * module.inDim) + j]!;
					}
				}
			}

			return out;
		};

		const before = await dense(source, worstName!);
		const afterW = await dense(reader, worstName!);
		const norm = (v: Float64Array): number => Math.sqrt(v.reduce((s, x) => s + (x * x), 0));
		const diff = before.map((x, i) => x - afterW[i]!);
		const kept = norm(afterW) / norm(before);
		assert.ok(Math.abs((kept * 100) - Number(worstKept)) < 0.1, `kept ${kept} vs shown ${worstKept}%`);
		assert.ok(Math.abs((norm(diff) / norm(before)) - Math.sqrt(1 - (kept * kept))) < 2e-3);
	} finally {
		await reader.close();
		await source.close();
	}

	// The reloaded list has the new file; c compares it with its source.
	frame = await app.waitFor(f => plain(f).includes('c compare'));
	app.press('c');
	frame = await app.waitFor(f => plain(f).includes('Compare') && plain(f).includes('B aria_rank5.safetensors'), 20_000);
	assert.match(lineWith(frame, 'A aria'), /A aria\.safetensors/);
	app.press(keys.escape);
	await app.waitFor(f => plain(f).includes('Wrote '));

	// Writing again asks; anything but y keeps the file as it is.
	const first = await stat(target);
	app.press('w');
	frame = await app.waitFor(f => plain(f).includes('already exists. Overwrite it?'));
	app.press('n');
	await app.waitFor(f => plain(f).includes('not written: aria_rank5.safetensors is kept'));
	assert.equal((await stat(target)).mtimeMs, first.mtimeMs);
	app.press('w');
	await app.waitFor(f => plain(f).includes('Overwrite it?'));
	app.press('y');
	await app.waitFor(f => plain(f).includes('wrote aria_rank5.safetensors'), 30_000);
	assert.notEqual((await stat(target)).mtimeMs, first.mtimeMs, 'y overwrote it');
	await readHeader(target);
});

test('esc cancels the decomposition ("cancelled"), r retries; a cancelled write leaves no file', async () => {
	const app = start(80, 24, {outDir: path.join(folder.dir, 'out')});
	await openAria(app);
	app.engine.hold = true;
	app.press('r');
	let frame = await app.waitFor(f => plain(f).includes('Decomposing'));
	assert.match(lineWith(frame, 'Decomposing'), /esc cancels/);
	assert.match(lineWith(frame, 'esc back'), /esc back/);
	app.press('w');
	frame = await app.waitFor(f => plain(f).includes('write: wait for the decomposition'));
	app.press(keys.escape);
	frame = await app.waitFor(f => plain(f).includes('Decomposition cancelled'));
	assert.equal(app.engine.cancelled.length, 1);
	app.engine.hold = false;
	app.engine.release();
	app.press('r');
	frame = await app.waitFor(f => plain(f).includes('decomposed on cpu'), 20_000);
	const lines = plain(frame).split('\n');
	assert.equal(lines.length, 23);
	assert.ok(lines.every(l => l.length <= 80), plain(frame));

	// A held write, cancelled: nothing under the target name.
	app.engine.hold = true;
	app.press('w');
	await app.waitFor(f => plain(f).includes('Writing') || plain(f).includes('Building'));
	app.press(keys.escape);
	await app.waitFor(f => plain(f).includes('no file written'));
	app.engine.hold = false;
	app.engine.release();
	await app.engine.idle();
	await assert.rejects(stat(path.join(folder.dir, 'out', 'aria_rank4.safetensors')));
	// --out outside the opened folder: c says why it cannot compare.
	app.press('w');
	frame = await app.waitFor(f => plain(f).includes('Wrote '), 30_000);
	assert.ok((await stat(path.join(folder.dir, 'out', 'aria_rank4.safetensors'))).size > 0);
});
