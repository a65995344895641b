// Blocks tab: per-block ‖ΔW‖ as bars in architecture order (U-Net/transformer first, text encoders
// separately), UNet vs TE totals, lora-inspector's average magnitude/strength, and the per-module
// table sortable by norm. The numbers come from the engine's stats job (LoraStats); this file only lays
// them out.
import type {BlockNorm, LoraStats, ModuleNorm, WeightBucket} from '../lora/types.js';
import {formatNumber} from './format.js';
import {bar, glyphs, progressBar} from './glyphs.js';
import {blank, line, seg, type Line} from './lines.js';
import {clean, fit, truncate} from './text.js';
import type {StatsSlot, TerminalEnv} from './types.js';

const teBlock = /^(TE\d?|CLIP|T5)$/;

export function isTextEncoderBlock(name: string): boolean {
	return teBlock.test(name);
}

export function splitBlocks(blocks: readonly BlockNorm[]): {unet: BlockNorm[]; te: BlockNorm[]} {
	const sorted = [...blocks].sort((a, b) => a.blockOrder - b.blockOrder);
	return {unet: sorted.filter(b => !isTextEncoderBlock(b.name)), te: sorted.filter(b => isTextEncoderBlock(b.name))};
}

function barLines(blocks: BlockNorm[], width: number, env: TerminalEnv, role: 'bar' | 'bar-alt'): Line[] {
	const max = Math.max(0, ...blocks.map(b => b.norm));
	const nameWidth = Math.max(5, ...blocks.map(b => b.name.length));
	const valueWidth = 9;
	const barWidth = Math.max(4, width - nameWidth - valueWidth - 14);
	return blocks.map(b =>
		line(
			[
				seg(fit(clean(b.name, env, 12), nameWidth, env), 'label'),
				seg(' '),
				seg(fit(bar(max > 0 ? b.norm / max : 0, barWidth, env), barWidth, env), role),
				seg(' '),
				seg(fit(formatNumber(b.norm), valueWidth, env, 'right'), 'value'),
				seg(fit(` ${b.modules} mod`, 9, env), 'dim'),
			],
			`block:${b.name}`,
		),
	);
}

function bucketText(name: string, bucket: WeightBucket | null): string | undefined {
	return bucket ? `${name} ${formatNumber(bucket.magnitude)} / ${formatNumber(bucket.strength)}` : undefined;
}

export function sortModules(modules: readonly ModuleNorm[], by: 'block' | 'norm'): ModuleNorm[] {
	const copy = [...modules];
	if (by === 'norm') {
		return copy.sort((a, b) => (b.norm ?? -1) - (a.norm ?? -1) || a.name.localeCompare(b.name));
	}

	return copy.sort((a, b) => a.blockOrder - b.blockOrder || a.name.localeCompare(b.name));
}

/** Module names are long and differ at the end: cut from the left. */
function tail(text: string, width: number, env: TerminalEnv): string {
	const mark = glyphs(env).ellipsis;
	if (text.length <= width) {
		return text.padEnd(width);
	}

	return (mark + text.slice(text.length - (width - mark.length))).padEnd(width);
}

export function moduleTableLines(modules: readonly ModuleNorm[], by: 'block' | 'norm', width: number, env: TerminalEnv): Line[] {
	const sorted = sortModules(modules, by);
	const numbers = 6 + 6 + 6 + 11;
	const nameWidth = Math.max(16, width - numbers - 1);
	const arrow = glyphs(env).down;
	const lines: Line[] = [
		line([
			seg(fit('module', nameWidth, env), 'heading'),
			seg(fit('block', 6, env, 'right'), 'heading'),
			seg(fit('rank', 6, env, 'right'), 'heading'),
			seg(fit('alpha', 6, env, 'right'), 'heading'),
			seg(fit(by === 'norm' ? `${arrow}${glyphs(env).norm}` : glyphs(env).norm, 11, env, 'right'), 'heading'),
		]),
	];
	for (const m of sorted) {
		const name = clean(m.name, env, 400);
		lines.push(
			line(
				[
					seg(tail(name, nameWidth, env), m.norm === null ? 'dim' : 'text'),
					seg(fit(clean(m.block, env, 8), 6, env, 'right'), 'label'),
					seg(fit(m.rank === null ? '-' : String(m.rank), 6, env, 'right')),
					seg(fit(m.alpha === null ? '-' : formatNumber(m.alpha, 3), 6, env, 'right')),
					seg(fit(m.norm === null ? 'needs base' : formatNumber(m.norm), 11, env, 'right'), m.nonFinite > 0 ? 'error' : 'value'),
				],
				`module:${m.name}`,
			),
		);
	}

	return lines;
}

export function blocksLines(slot: StatsSlot | undefined, moduleSort: 'block' | 'norm', width: number, env: TerminalEnv): Line[] {
	if (!slot) {
		return [line([seg('Per-block statistics are computed in the engine when this tab is open.', 'dim')])];
	}

	if (slot.state === 'running') {
		const barWidth = Math.min(40, Math.max(10, width - 30));
		const counts = slot.total > 0 ? ` ${slot.done}/${slot.total} modules` : ' starting';
		return [line([seg(`Computing ${glyphs(env).norm} per module `), seg(progressBar(slot.done, slot.total, barWidth, env), 'accent'), seg(counts, 'dim')])];
	}

	if (slot.state === 'error') {
		return [line([seg('Statistics failed: ', 'error'), seg(clean(slot.error ?? 'unknown error', env, 300))]), line([seg('L shows the engine log.', 'dim')])];
	}

	if (slot.state === 'cancelled' || !slot.result) {
		return [line([seg('Statistics were cancelled; they start again while this tab is shown.', 'dim')])];
	}

	return statsLines(slot.result, moduleSort, width, env);
}

export function statsLines(stats: LoraStats, moduleSort: 'block' | 'norm', width: number, env: TerminalEnv): Line[] {
	const lines: Line[] = [];
	const ratio = stats.unetNorm > 0 ? stats.teNorm / stats.unetNorm : undefined;
	lines.push(
		line([
			seg(`UNet ${glyphs(env).norm} `, 'label'),
			seg(formatNumber(stats.unetNorm), 'value'),
			seg(`   TE ${glyphs(env).norm} `, 'label'),
			seg(formatNumber(stats.teNorm), 'value'),
			seg(ratio === undefined ? '' : `   TE/UNet ${formatNumber(ratio, 3)}`, 'dim'),
		]),
	);
	const buckets = [
		bucketText('UNet', stats.buckets.unet),
		bucketText('UNet conv', stats.buckets.unetConv),
		bucketText('TE', stats.buckets.te),
		bucketText('TE2', stats.buckets.te2),
	].filter((text): text is string => text !== undefined);
	if (buckets.length > 0) {
		lines.push(line([seg('avg magnitude / strength (lora-inspector): ', 'dim'), seg(truncate(buckets.join(', '), Math.max(10, width - 42), env))]));
	}

	if (stats.nonFiniteValues > 0) {
		lines.push(line([seg(`${glyphs(env).warn} ${stats.nonFiniteValues} NaN/Inf values in the weights`, 'error')]));
	}

	if (stats.zeroModules.length > 0) {
		lines.push(line([seg(`${glyphs(env).warn} ${stats.zeroModules.length} modules have an all-zero update`, 'warn')]));
	}

	const {unet, te} = splitBlocks(stats.blocks);
	lines.push(blank, line([seg(`${glyphs(env).norm} per block (U-Net / transformer, block order)`, 'heading')]));
	lines.push(...(unet.length > 0 ? barLines(unet, width, env, 'bar') : [line([seg('no U-Net modules', 'dim')])]));
	lines.push(blank, line([seg('Text encoder', 'heading')]));
	lines.push(...(te.length > 0 ? barLines(te, width, env, 'bar-alt') : [line([seg('no text-encoder modules', 'dim')])]));
	lines.push(blank, line([seg(`Modules (${stats.modules.length}), sorted by ${moduleSort === 'norm' ? glyphs(env).norm : 'block'}: o to toggle`, 'heading')]));
	lines.push(...moduleTableLines(stats.modules, moduleSort, width, env));
	return lines;
}
