// The Resize view as lines: a fixed head (file, method, parameter, job progress, the base checkpoint
// of a checkpoint recipe, the outcome in numbers) and a scrollable body (notes, the modules with no
// base weight, kept rank per block before → after as bars with the kept ‖ΔW‖ per block, the worst
// modules by error, the rank histogram). Pure: built from state and the
// memoised plan, tested without rendering. Names from the file are cleaned.
import path from 'node:path';
import {formatArch} from '../lora/arch.js';
import {formatParameter, type PlannedModule, type ResizePlan} from '../lora/resize-plan.js';
import {formatBytes, formatNumber} from './format.js';
import {bar, glyphs, progressBar} from './glyphs.js';
import {blank, line, seg, type Line, type Segment} from './lines.js';
import {
	choiceDisabledReason,
	currentParam,
	enabledChoices,
	isRecipeChoice,
	needsBase,
	paramKindOf,
	paramName,
	resizePreview,
	sessionBaseSlot,
	stepHint,
	type Preview,
} from './resize-preview.js';
import {clean, fit} from './text.js';
import type {BaseNormsSlot, JobProgress, JobSlot, ResizeSession} from './tools-types.js';
import {resizeChoices} from './tools-types.js';
import type {AppState, TerminalEnv} from './types.js';

export type ResizeLines = {head: Line[]; body: Line[]};

/** "45.2 MB/s · ETA 3 s" from an engine progress event (either part only when known). */
export function rateText(progress: JobProgress | undefined): string {
	const parts: string[] = [];
	if (progress?.bytesPerSecond !== undefined && Number.isFinite(progress.bytesPerSecond) && progress.bytesPerSecond > 0) {
		parts.push(`${(progress.bytesPerSecond / 1e6).toFixed(1)} MB/s`);
	}

	if (progress?.etaSeconds !== undefined && Number.isFinite(progress.etaSeconds)) {
		const eta = Math.max(0, Math.ceil(progress.etaSeconds));
		parts.push(`ETA ${eta < 60 ? `${eta} s` : `${Math.floor(eta / 60)} min ${eta % 60} s`}`);
	}

	return parts.join(' · ');
}

/** Kept share as a percentage with two decimals (the figures users compare between steps). */
export function percent2(fraction: number): string {
	return Number.isFinite(fraction) ? `${(fraction * 100).toFixed(2)}%` : '-';
}

export function paramText(session: ResizeSession): string {
	const value = currentParam(session);
	switch (session.choice) {
		case 'rank': {
			return `rank ${value}`;
		}

		case 'sv_ratio':
		case 'sv_fro':
		case 'sv_cumulative': {
			return `${session.choice} ${formatNumber(value)}`;
		}

		default: {
			return paramKindOf(session) === 'size' ? `${session.choice}=1 size ${formatNumber(value)} MiB` : `${session.choice}=1 thr ${formatNumber(value)}`;
		}
	}
}

function progressSegments(label: string, slot: JobSlot<unknown>, unit: 'modules' | 'weights' | 'percent', width: number, env: TerminalEnv, hint: string): Segment[] {
	const progress = slot.progress;
	const done = progress?.done ?? 0;
	const total = progress?.total ?? 0;
	const barWidth = Math.min(30, Math.max(10, Math.floor(width / 4)));
	const counts = total > 0 ? (unit === 'percent' ? `${Math.floor((100 * done) / total)}%` : `${done}/${total} ${unit}`) : 'starting';
	const rate = rateText(progress);
	return [
		seg(`${label} `, 'accent'),
		seg(progressBar(done, total, barWidth, env), 'accent'),
		seg(` ${counts}`),
		seg(rate === '' ? '' : `  ${rate}`, 'dim'),
		seg(`  ${hint}`, 'dim'),
	];
}

/**
 * The choices `m` cycles through, the current one highlighted. With --base there are nine, wider
 * than 80 columns: the line then shows a window of them that always holds the current choice, with
 * ‹ › where more are hidden, so the selection is never cut off at the right edge.
 */
function methodLine(session: ResizeSession, basePath: string | null, width: number, env: TerminalEnv): Line {
	const labelWidth = 9;
	const {ellipsis} = glyphs(env);
	const marker = ellipsis.length + 1;
	const choices = enabledChoices(basePath);
	const cellWidth = (choice: string): number => choice.length + 2;
	const total = choices.reduce((sum, choice) => sum + cellWidth(choice), 0);
	const room = width - labelWidth;
	let first = 0;
	let last = choices.length - 1;
	if (total > room) {
		// Grow a window from the current choice, rightward first, leaving room for the markers.
		const current = Math.max(0, choices.indexOf(session.choice));
		first = current;
		last = current;
		let used = cellWidth(choices[current]!);
		for (let grew = true; grew;) {
			grew = false;
			const markers = (first > 0 ? marker : 0) + (last < choices.length - 1 ? marker : 0);
			if (last + 1 < choices.length && used + cellWidth(choices[last + 1]!) + markers + marker <= room) {
				last++;
				used += cellWidth(choices[last]!);
				grew = true;
			} else if (first > 0 && used + cellWidth(choices[first - 1]!) + markers + marker <= room) {
				first--;
				used += cellWidth(choices[first]!);
				grew = true;
			}
		}
	}

	const segments: Segment[] = [seg(fit('Method', labelWidth, env), 'label')];
	if (first > 0) {
		segments.push(seg(`${ellipsis} `, 'dim'));
	}

	for (const choice of choices.slice(first, last + 1)) {
		segments.push(seg(` ${choice} `, choice === session.choice ? 'selected' : undefined));
	}

	if (last < choices.length - 1) {
		segments.push(seg(` ${ellipsis}`, 'dim'));
	}

	const disabled = resizeChoices.filter(choice => choiceDisabledReason(choice, basePath) !== undefined);
	const hint = `  ${disabled.join(', ')}: need --base <ckpt>`;
	if (disabled.length > 0 && total + hint.length <= room) {
		segments.push(seg(hint, 'dim'));
	}

	return line(segments);
}

function paramLine(session: ResizeSession, preview: Preview, env: TerminalEnv): Line {
	const kind = paramKindOf(session);
	const label = seg(fit('Param', 9, env), 'label');
	// size= picks the threshold: show which one, so thr and size can be compared.
	const threshold = kind === 'size' && preview.state === 'ready' && preview.plan.threshold !== null ? ` → thr ${formatParameter(preview.plan.threshold)}` : '';
	const toggle = kind === 'size' ? '  s: by thr' : (isRecipeChoice(session.choice) ? '  s: by size' : '');
	return line([
		label,
		seg(paramText(session), 'accent'),
		seg(threshold, 'accent'),
		seg(`  ${paramName(kind)}`, 'dim'),
		seg(`   ${stepHint(kind)}  = types${toggle}`, 'dim'),
	]);
}

function statusLine(state: AppState, session: ResizeSession, preview: Preview, width: number): Line {
	const {env} = state;
	const slot = state.tools.decompositions[session.key];
	const label = (text: string): Segment => seg(fit(text, 9, env), 'label');
	if (!slot || slot.state === 'queued' || slot.state === 'running') {
		return line([label('Engine'), ...progressSegments('Decomposing', slot ?? {kind: 'decompose', requestId: 0, state: 'queued'}, 'modules', width, env, 'esc cancels')]);
	}

	if (slot.state === 'cancelling') {
		return line([label('Engine'), seg(`Cancelling the decomposition${glyphs(env).ellipsis}`, 'warn')]);
	}

	if (slot.state === 'cancelled') {
		return line([label('Engine'), seg('Decomposition cancelled', 'warn'), seg('  r decomposes again, esc goes back', 'dim')]);
	}

	if (slot.state === 'error') {
		return line([label('Engine'), seg(`Decomposition failed: ${clean(slot.error ?? 'unknown error', env, 300)}`, 'error'), seg('  r retries', 'dim')]);
	}

	const write = session.write;
	if (write) {
		const name = clean(path.basename(write.target), env, 200);
		switch (write.state) {
			case 'queued':
			case 'running': {
				const phase = write.progress?.label?.startsWith('building') ? 'Building' : 'Writing';
				return line([label('Write'), ...progressSegments(`${phase} ${name}`, write, 'percent', width, env, 'esc cancels')]);
			}

			case 'cancelling': {
				return line([label('Write'), seg(`Cancelling the write${glyphs(env).ellipsis}`, 'warn')]);
			}

			case 'cancelled': {
				return line([label('Write'), seg('Write cancelled: no file written', 'warn')]);
			}

			case 'error': {
				return line([label('Write'), seg(`Write failed: ${clean(write.error ?? 'unknown error', env, 300)}`, 'error')]);
			}

			case 'done': {
				const result = write.result;
				const written = clean(path.basename(result?.outPath ?? write.target), env, 200);
				return line([
					label('Wrote'),
					seg(written, 'ok'),
					seg(result ? `  ${formatBytes(result.sizes.outputBytes)}, ${result.sizes.compression.toFixed(2)}× smaller` : ''),
					seg('  c compares it with its source', 'dim'),
				]);
			}
		}
	}

	const summary = slot.result;
	const timing = summary ? `decomposed on ${clean(summary.device, env, 40)} in ${summary.seconds.toFixed(2)} s` : 'decomposed';
	const replan = preview.state === 'ready' ? ` · re-planned in ${preview.planMs.toFixed(1)} ms` : '';
	return line([label('Engine'), seg(`${timing}${replan}`, 'dim'), seg('  w writes', 'dim')]);
}

/** How many modules the base checkpoint scores, or the base-norms job's progress or failure. */
function baseLine(state: AppState, slot: BaseNormsSlot, width: number): Line {
	const {env} = state;
	const label = seg(fit('Base', 9, env), 'label');
	const name = clean(path.basename(slot.basePath), env, 200);
	switch (slot.state) {
		case 'queued':
		case 'running': {
			return line([label, ...progressSegments(`Base norms of ${name}`, slot, 'weights', width, env, 'esc cancels')]);
		}

		case 'cancelling': {
			return line([label, seg(`Cancelling the base norms${glyphs(env).ellipsis}`, 'warn')]);
		}

		case 'cancelled': {
			return line([label, seg('Base norms cancelled', 'warn'), seg('  r computes them again', 'dim')]);
		}

		case 'error': {
			return line([label, seg(`Base norms failed: ${clean(slot.error ?? 'unknown error', env, 300)}`, 'error'), seg('  r retries', 'dim')]);
		}

		case 'done': {
			const result = slot.result;
			const mapped = result ? Object.keys(result.norms).length : 0;
			const unmapped = result?.unmapped.length ?? 0;
			const timing = result ? (result.cached ? 'from cache' : `${result.seconds.toFixed(2)} s on ${clean(result.device, env, 40)}`) : '';
			return line([
				label,
				seg(name),
				seg(`  ${mapped} modules mapped`, mapped > 0 ? 'ok' : 'warn'),
				seg(` · ${unmapped} unmapped`, unmapped > 0 ? 'warn' : undefined),
				seg(unmapped > 0 ? ' (full rank; listed below)' : '', 'dim'),
				seg(`  ${timing}`, 'dim'),
			]);
		}
	}
}

function headLines(state: AppState, session: ResizeSession, preview: Preview, width: number): Line[] {
	const {env} = state;
	const row = state.rows.get(session.path);
	const model = row?.entry?.model;
	const label = (text: string): Segment => seg(fit(text, 9, env), 'label');
	const about = model ? `  ${formatArch(model.arch)} · ${model.networkType} · ${model.modules.length} modules · rank ${model.rank ?? '-'} · ${model.dtype}` : '';
	const head: Line[] = [
		line([seg('Resize ', 'heading'), seg(clean(path.basename(session.path), env, 200)), seg(about, 'dim')]),
		methodLine(session, state.tools.basePath, width, env),
		paramLine(session, preview, env),
		statusLine(state, session, preview, width),
	];
	const base = sessionBaseSlot(state);
	if (base && (needsBase(session.choice) || base.state === 'queued' || base.state === 'running' || base.state === 'cancelling')) {
		head.push(baseLine(state, base, width));
	}

	if (preview.state === 'invalid') {
		head.push(line([label('Method'), seg(clean(preview.error, env, 300), 'error')]));
	} else if (preview.state === 'ready') {
		const {plan, target} = preview;
		const {sizes, totals} = plan;
		head.push(
			line([
				label('Output'),
				seg(clean(path.basename(target), env, 200)),
				seg(`  ≈ ${formatBytes(sizes.estimatedBytes)} of ${formatBytes(sizes.sourceBytes)}`),
				seg(`  (${sizes.compression.toFixed(2)}× smaller)`, 'accent'),
			]),
			line([
				label('Kept'),
				seg(`‖ΔW‖ ${percent2(totals.froRetained)}`, 'accent'),
				seg(` · error ${percent2(totals.error)}`),
				seg(` · total rank ${totals.rankBefore} → ${totals.rankAfter}`),
			]),
			line([
				label('Modules'),
				seg(`${totals.resized} resized · ${totals.kept} unchanged · ${totals.removed} removed · ${totals.copied} copied unchanged`),
			]),
		);
	}

	return head;
}

function notes(plan: ResizePlan, env: TerminalEnv, width: number): Line[] {
	const g = glyphs(env);
	const out: Line[] = [];
	const dora = plan.modules.filter(m => m.action !== 'copy' && m.note?.startsWith('DoRA')).length;
	if (dora > 0) {
		out.push(line([seg(`${g.warn} `, 'warn'), seg(`${dora} DoRA modules: dora_scale is copied unchanged, so their result is approximate`, 'warn')]));
	}

	const reasons = new Map<string, number>();
	for (const module of plan.modules) {
		if (module.action === 'copy') {
			const reason = module.note ?? 'not resizable: copied unchanged';
			reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
		}
	}

	for (const [reason, count] of reasons) {
		out.push(line([seg(`${g.dot} `, 'dim'), seg(clean(`${count} modules: ${reason}`, env, width))]));
	}

	if (plan.removed.length > 0) {
		out.push(line([seg(`${g.dot} `, 'dim'), seg(`${plan.removed.length} modules go to rank 0 and are left out of the output`)]));
	}

	return out;
}

/** Shown first-come; the rest is counted (a LoRA for another model can miss hundreds). */
const unmappedShown = 30;

/** The modules the checkpoint has no weight for, with the mapper's reason: they keep their rank. */
function unmappedLines(slot: BaseNormsSlot | undefined, env: TerminalEnv, width: number): Line[] {
	const result = slot?.state === 'done' ? slot.result : undefined;
	if (!result || result.unmapped.length === 0) {
		return [];
	}

	const lines: Line[] = [
		blank,
		line([seg('Modules without a base weight', 'heading'), seg('  not scored: they keep their full rank', 'dim')]),
	];
	const nameWidth = Math.max(16, Math.min(70, Math.floor(width * 0.55)));
	for (const name of result.unmapped.slice(0, unmappedShown)) {
		lines.push(
			line(
				[
					seg(`  ${fit(clean(name, env, 400), nameWidth, env)}`),
					seg(`  ${clean(result.unmappedReasons[name] ?? 'no matching weight', env, 300)}`, 'dim'),
				],
				`unmapped:${name}`,
			),
		);
	}

	if (result.unmapped.length > unmappedShown) {
		lines.push(line([seg(`  ${glyphs(env).ellipsis} and ${result.unmapped.length - unmappedShown} more`, 'dim')]));
	}

	return lines;
}

function blockLines(plan: ResizePlan, env: TerminalEnv, width: number): Line[] {
	const nameWidth = 8;
	// name, bar, " 12.0 → ", bar, " 12.0", "  100.00%"
	const barWidth = Math.max(4, Math.min(24, Math.floor((width - nameWidth - 26) / 2)));
	const maxRank = Math.max(1, ...plan.blocks.map(b => b.meanRankBefore));
	const lines: Line[] = [
		line([seg('Kept rank per block', 'heading'), seg('  mean rank before → after, and the share of ‖ΔW‖ kept', 'dim')]),
	];
	for (const block of plan.blocks) {
		const before = bar(block.meanRankBefore / maxRank, barWidth, env);
		const after = bar(block.meanRankAfter / maxRank, barWidth, env);
		lines.push(
			line(
				[
					seg(fit(clean(block.block, env, 40), nameWidth, env), 'label'),
					seg(fit(before, barWidth, env), 'bar'),
					seg(` ${block.meanRankBefore.toFixed(1).padStart(5)} → `),
					seg(fit(after, barWidth, env), 'bar-alt'),
					seg(` ${block.meanRankAfter.toFixed(1).padStart(5)}`),
					seg(`  ${percent2(block.froRetained).padStart(7)}`, block.froRetained < 0.9 ? 'warn' : 'value'),
				],
				`block:${block.block}`,
			),
		);
	}

	return lines;
}

function worstLines(worst: readonly PlannedModule[], env: TerminalEnv, width: number): Line[] {
	const lines: Line[] = [line([seg('Worst modules by error', 'heading'), seg('  relative Frobenius error of each module\'s update', 'dim')])];
	if (worst.length === 0) {
		lines.push(line([seg(`${glyphs(env).check} no module loses anything`, 'ok')]));
		return lines;
	}

	// " 16 → 8    kept  96.13% err  27.50%"
	const tail = 40;
	const nameWidth = Math.max(10, width - tail - 2);
	for (const module of worst) {
		lines.push(
			line(
				[
					seg(`  ${fit(clean(module.name, env, 400), nameWidth, env)}`),
					seg(` ${String(module.rankBefore ?? '-').padStart(4)} → ${String(module.rankAfter).padEnd(4)}`),
					seg(` kept ${percent2(module.froRetained).padStart(7)}`),
					seg(` err ${percent2(module.error).padStart(7)}`, module.error > 0.5 ? 'warn' : 'value'),
				],
				`module:${module.name}`,
			),
		);
	}

	return lines;
}

function histogramLines(plan: ResizePlan, env: TerminalEnv, width: number): Line[] {
	const lines: Line[] = [line([seg('Rank histogram', 'heading'), seg('  modules per rank, before and after', 'dim')])];
	const most = Math.max(1, ...plan.histogram.flatMap(bin => [bin.before, bin.after]));
	const barWidth = Math.max(4, Math.min(30, Math.floor((width - 40) / 2)));
	for (const bin of plan.histogram) {
		lines.push(
			line([
				seg(`  rank ${String(bin.rank).padStart(4)}`, 'label'),
				seg('  before '),
				seg(fit(bar(bin.before / most, barWidth, env), barWidth, env), 'bar'),
				seg(` ${String(bin.before).padStart(5)}`),
				seg('  after '),
				seg(fit(bar(bin.after / most, barWidth, env), barWidth, env), 'bar-alt'),
				seg(` ${String(bin.after).padStart(5)}`),
			]),
		);
	}

	return lines;
}

/** Rows left for the scrolling part inside the view's border, under the head and a rule. */
export function resizeBodyRows(bodyHeight: number, headLines: number): number {
	return Math.max(1, bodyHeight - 2 - headLines - 1);
}

/** The largest useful scroll of the body at the current viewport. */
export function resizeMaxScroll(state: AppState): number {
	const {head, body} = resizeLines(state, Math.max(20, state.viewport.bodyWidth - 2));
	return Math.max(0, body.length - resizeBodyRows(state.viewport.bodyRows, head.length));
}

/** The view's lines for the open session; empty when none is open. */
export function resizeLines(state: AppState, width: number): ResizeLines {
	const session = state.tools.resize;
	if (!session) {
		return {head: [], body: []};
	}

	const preview = resizePreview(state);
	const head = headLines(state, session, preview, width);
	const unmapped = needsBase(session.choice) ? unmappedLines(sessionBaseSlot(state), state.env, width) : [];
	if (preview.state !== 'ready') {
		const waitingFor = preview.state === 'waiting' && preview.for === 'base' ? 'the base norms are computed' : 'the decomposition is done';
		return {head, body: [blank, line([seg(`The preview appears when ${waitingFor}.`, 'dim')]), ...unmapped]};
	}

	const {plan} = preview;
	const body: Line[] = [...notes(plan, state.env, width), ...unmapped];
	body.push(blank, ...blockLines(plan, state.env, width), blank, ...worstLines(plan.worst, state.env, width), blank, ...histogramLines(plan, state.env, width));
	return {head, body};
}
