// Possible training problems read from metadata and weights. Each finding says what was seen and why
// it may matter; none is a verdict (a deliberate choice by the trainer looks the same from here).
// Text that comes from the file (module names) is sanitised before it goes into a finding.

import {archFromClaim, type TrainingInfo} from './metadata.js';
import {sanitizeLine} from './sanitize.js';
import type {Arch, LoraModel, LoraStats, ModuleAlgo} from './types.js';

export type Finding = {
	/** Stable id, e.g. 'te-lr-high' (for filtering and tests). */
	id: string;
	severity: 'note' | 'warning';
	title: string;
	reason: string;
};

export type FindingInput = {
	training: TrainingInfo;
	model: LoraModel | null;
	stats: LoraStats | null;
};

/** LRs an adaptive optimizer expects: it scales its own step, so the LR is a multiplier near 1. */
const adaptiveLrRange: [number, number] = [0.5, 2];
/** alpha/dim at or below this is "tiny" (1/64: e.g. alpha 1 at dim 64 or 128). */
const tinyScale = 1 / 64;
/** LRs at or below this are the default-sized ones people use with alpha = dim or dim/2. */
const defaultSizedLr = 2e-4;
/** TE total ‖ΔW‖ above UNet total × this is reported as a warning rather than a note. */
const teDominanceWarning = 3;

const archNames: Record<Arch, string> = {
	sd1: 'SD 1.x',
	sd2: 'SD 2.x',
	sdxl: 'SDXL',
	sd3: 'SD3',
	flux: 'Flux',
	unknown: 'unknown',
};

/** Prodigy, DAdaptation* (incl. D-Adapt Lion), and their schedule-free variants. */
export function isAdaptiveOptimizer(name: string | null): boolean {
	return name !== null && /prodigy|d-?adapt/i.test(name);
}

/** Short number for reasons: 1e-4 style for small values, plain otherwise. */
function num(v: number): string {
	if (v === 0) {
		return '0';
	}

	const a = Math.abs(v);
	if (a < 0.01 || a >= 1e5) {
		const [mantissa, exponent] = v.toExponential(2).split('e');
		return `${String(Number(mantissa))}e${Number(exponent)}`;
	}

	return String(Number(v.toPrecision(4)));
}

/** Equal up to a relative 1e-3 (alphas stored as fp16 tensors round, e.g. 0.1 → 0.09998). */
function sameValue(a: number, b: number): boolean {
	return Math.abs(a - b) <= 1e-3 * Math.max(Math.abs(a), Math.abs(b));
}

function listNames(names: string[], max = 3): string {
	const shown = names.slice(0, max).map(n => sanitizeLine(n, 60));
	return names.length > max ? `${shown.join(', ')} and ${names.length - max} more` : shown.join(', ');
}

function hasTextEncoder(model: LoraModel | null): boolean | null {
	return model ? model.modules.some(m => m.component !== 'unet') : null;
}

function checkLearningRates(t: TrainingInfo, model: LoraModel | null, out: Finding[]): void {
	const adaptive = isAdaptiveOptimizer(t.optimizerName ?? t.optimizer);
	if (adaptive) {
		const lrs: Array<[string, number | null]> = [
			['learning rate', t.learningRate],
			['UNet LR', t.unetLr],
			['text-encoder LR', t.derived.effectiveTextEncoderLr === t.learningRate ? null : t.derived.effectiveTextEncoderLr],
		];
		const off = lrs.filter(
			(x): x is [string, number] => x[1] !== null && x[1] > 0 && (x[1] < adaptiveLrRange[0] || x[1] > adaptiveLrRange[1]),
		);
		if (off.length > 0) {
			out.push({
				id: 'adaptive-optimizer-lr',
				severity: 'warning',
				title: 'Adaptive optimizer with a learning rate far from 1',
				reason: `${sanitizeLine(t.optimizerShortName ?? 'The optimizer', 40)} estimates its own step size and treats the LR as a multiplier, usually left at about 1.0; this run used ${off
					.map(([label, v]) => `${label} ${num(v)}`)
					.join(', ')}, which may have made training much slower or faster than intended.`,
			});
		}

		return; // TE vs UNet rates are all ~1 with adaptive optimizers by design.
	}

	const unet = t.derived.effectiveUnetLr;
	const te = t.derived.effectiveTextEncoderLr;
	const trainsTe = hasTextEncoder(model);
	if (unet === null || te === null || te <= 0 || unet <= 0 || trainsTe === false) {
		return;
	}

	if (te > unet || sameValue(te, unet)) {
		const above = te > unet && !sameValue(te, unet);
		out.push({
			id: 'te-lr-high',
			severity: above ? 'warning' : 'note',
			title: above ? 'Text-encoder LR above the UNet LR' : 'Text-encoder LR equal to the UNet LR',
			reason: `The text encoder was trained at ${num(te)} and the UNet at ${num(unet)}; common practice keeps the text-encoder rate 5–10× lower, because the text encoder overfits quickly and can make the LoRA rigid or bleed into unrelated prompts.`,
		});
	}
}

function checkScale(t: TrainingInfo, model: LoraModel | null, out: Finding[]): void {
	const dim = t.derived.metadataDim ?? model?.rank ?? null;
	const alpha = t.derived.metadataAlpha ?? model?.alpha ?? null;
	if (dim === null || alpha === null || dim <= 0) {
		return;
	}

	const fromMetadata = t.derived.metadataDim !== null && t.derived.metadataAlpha !== null;
	const where = fromMetadata ? 'metadata' : 'tensors';
	if (alpha > dim && !sameValue(alpha, dim)) {
		out.push({
			id: 'alpha-above-dim',
			severity: 'note',
			title: 'Alpha above dim',
			reason: `Alpha ${num(alpha)} with dim ${num(dim)} (${where}) multiplies every update by ${num(alpha / dim)}; kohya's default keeps alpha ≤ dim, and a scale above 1 amplifies the LR's effect, which can make training unstable.`,
		});
		return;
	}

	const scale = alpha / dim;
	const lr = t.derived.effectiveUnetLr;
	if (
		scale <= tinyScale &&
		lr !== null &&
		lr > 0 &&
		lr <= defaultSizedLr &&
		!isAdaptiveOptimizer(t.optimizerName ?? t.optimizer)
	) {
		out.push({
			id: 'tiny-scale',
			severity: 'note',
			title: 'Tiny alpha/dim with a default-sized LR',
			reason: `Alpha ${num(alpha)} / dim ${num(dim)} scales updates by ${num(scale)}, and the UNet LR was ${num(lr)}; such a small scale is usually paired with a proportionally larger LR, so this LoRA may have learned little.`,
		});
	}
}

function checkWeights(stats: LoraStats, model: LoraModel | null, out: Finding[]): void {
	if (stats.nonFiniteValues > 0) {
		const modules = stats.modules.filter(m => m.nonFinite > 0).map(m => m.name);
		out.push({
			id: 'non-finite-weights',
			severity: 'warning',
			title: 'NaN or Inf values in the weights',
			reason: `${stats.nonFiniteValues} value${stats.nonFiniteValues === 1 ? '' : 's'} are NaN or infinite${
				modules.length > 0 ? ` (in ${listNames(modules)})` : ''
			}; applying this LoRA would likely produce black or noisy images, a sign that training diverged (e.g. fp16 overflow or too high an LR).`,
		});
	}

	if (stats.zeroModules.length > 0) {
		const total = model?.modules.length ?? stats.modules.length;
		const all = total > 0 && stats.zeroModules.length >= total;
		out.push({
			id: 'zero-modules',
			severity: all ? 'warning' : 'note',
			title: all ? 'Every module has a zero update' : 'Modules whose update is exactly zero',
			reason: `${stats.zeroModules.length}${total > 0 ? ` of ${total}` : ''} module${
				stats.zeroModules.length === 1 ? '' : 's'
			} (${listNames(stats.zeroModules)}) change nothing; this may mean those layers never received gradients (frozen, an LR of 0, or a text encoder that was not trained) or were zeroed by a tool.`,
		});
	}

	const {teNorm, unetNorm} = stats;
	if (teNorm > 0 && Number.isFinite(teNorm) && Number.isFinite(unetNorm) && teNorm > unetNorm) {
		const strong = unetNorm === 0 || teNorm > teDominanceWarning * unetNorm;
		out.push({
			id: 'te-dominates',
			severity: strong ? 'warning' : 'note',
			title: 'Text encoder carries most of the update',
			reason:
				unetNorm === 0
					? `The text-encoder modules have ‖ΔW‖ ${num(teNorm)} while the UNet's update is zero; the LoRA may act only through the prompt.`
					: `Total ‖ΔW‖ of the text encoder is ${num(teNorm)} against ${num(unetNorm)} for the UNet (${num(teNorm / unetNorm)}×), although the UNet usually has more modules; a text encoder trained this hard may overfit to the captions.`,
		});
	}
}

const rankedAlgos = new Set<ModuleAlgo>(['lora', 'locon-tucker', 'loha']);

/** Ranks (or alphas) found on the modules, split into linear/1×1 and k×k conv modules. */
function moduleValues(model: LoraModel, pick: 'rank' | 'alpha'): {linear: Set<number>; conv: Set<number>} {
	const linear = new Set<number>();
	const conv = new Set<number>();
	for (const m of model.modules) {
		// LoKr ranks follow LyCORIS' factorisation rules (and unfactorised LoKr forces alpha = dim), so
		// only algorithms whose rank is network_dim itself are compared.
		if (!rankedAlgos.has(m.algo)) {
			continue;
		}

		const v = m[pick];
		// Alphas that were filled in from the metadata cannot contradict it.
		if (v === null || (pick === 'alpha' && m.alphaSource !== 'tensor')) {
			continue;
		}

		(m.kind === 'convkxk' ? conv : linear).add(v);
	}

	return {linear, conv};
}

function setHas(values: Set<number>, v: number): boolean {
	for (const x of values) {
		if (sameValue(x, v)) {
			return true;
		}
	}

	return false;
}

function describeSet(values: Set<number>): string {
	const sorted = [...values].sort((a, b) => a - b);
	return sorted.length > 4 ? `${num(sorted[0]!)}–${num(sorted.at(-1)!)}` : sorted.map(v => num(v)).join(', ');
}

function checkDimAlpha(t: TrainingInfo, model: LoraModel, out: Finding[]): void {
	const problems: string[] = [];
	const ranks = moduleValues(model, 'rank');
	const alphas = moduleValues(model, 'alpha');
	const dim = t.derived.metadataDim;
	const alpha = t.derived.metadataAlpha;
	// With conv_dim set, k×k conv modules follow it; otherwise they follow network_dim too.
	const convDim = t.derived.convDim ?? dim;
	const convAlpha = t.derived.convAlpha ?? (t.derived.convDim === null ? alpha : null);

	if (dim !== null && ranks.linear.size > 0 && !setHas(ranks.linear, dim)) {
		problems.push(`ss_network_dim says ${num(dim)}, the tensors have rank ${describeSet(ranks.linear)}`);
	}

	if (convDim !== null && ranks.conv.size > 0 && !setHas(ranks.conv, convDim)) {
		problems.push(`conv dim ${num(convDim)} in the metadata, conv tensors have rank ${describeSet(ranks.conv)}`);
	}

	if (alpha !== null && alphas.linear.size > 0 && !setHas(alphas.linear, alpha)) {
		problems.push(`ss_network_alpha says ${num(alpha)}, the alpha tensors hold ${describeSet(alphas.linear)}`);
	}

	if (convAlpha !== null && alphas.conv.size > 0 && !setHas(alphas.conv, convAlpha)) {
		problems.push(`conv alpha ${num(convAlpha)} in the metadata, conv alpha tensors hold ${describeSet(alphas.conv)}`);
	}

	if (problems.length > 0) {
		out.push({
			id: 'metadata-weights-mismatch',
			severity: 'warning',
			title: 'Rank or alpha in the metadata disagree with the weights',
			reason: `${problems.join('; ')}. The file was probably resized, merged or converted by a tool that left the old metadata; trust the tensors, and note that tools reading the metadata may apply the wrong scale.`,
		});
	}
}

function checkMetadataPresence(t: TrainingInfo, out: Finding[]): void {
	if (t.metadataLevel === 'none') {
		out.push({
			id: 'missing-metadata',
			severity: 'note',
			title: 'No training metadata',
			reason: 'The file has no ss_* keys: it was probably trained by a tool that writes no training metadata (diffusers, PEFT, some trainers), or the metadata was stripped, so LR, steps and dataset cannot be shown.',
		});
	} else if (t.metadataLevel === 'minimal') {
		const by = t.software ? ` (written by ${sanitizeLine(t.software.name, 30)})` : '';
		out.push({
			id: 'minimal-metadata',
			severity: 'note',
			title: 'Training settings not recorded',
			reason: `The file has ss_* keys${by} but no learning rate, optimizer or dataset sizes, as sd-scripts writes with --no_metadata or as some other trainers do; the run's settings cannot be shown or checked.`,
		});
	}

	if (t.fieldErrors.length > 0) {
		const keys = [...new Set(t.fieldErrors.map(e => e.key))];
		out.push({
			id: 'unreadable-metadata',
			severity: 'note',
			title: 'Some metadata values could not be read',
			reason: `${listNames(keys, 4)} ${keys.length === 1 ? 'holds' : 'hold'} values that are not in the expected form (shown raw in the Metadata tab); the file may have been edited by hand or by another tool.`,
		});
	}
}

function checkArch(t: TrainingInfo, model: LoraModel, out: Finding[]): void {
	const claimed = model.metadataArch ?? t.derived.metadataArch ?? archFromClaim(t.baseModelVersion);
	if (claimed === null || model.arch === 'unknown' || claimed === model.arch) {
		return;
	}

	const claim = t.baseModelVersion ?? t.modelspec.architecture;
	out.push({
		id: 'arch-mismatch',
		severity: 'warning',
		title: 'Base model in the metadata disagrees with the weights',
		reason: `The metadata says ${claim ? `"${sanitizeLine(claim, 40)}" (${archNames[claimed]})` : archNames[claimed]}, but the tensor names and shapes look like ${archNames[model.arch]} (${sanitizeLine(model.archEvidence, 60)}); the metadata may be stale or written wrongly by the trainer, so do not rely on it to pick a base model.`,
	});
}

/** All findings for one file, in a stable order (metadata first, then weights). */
export function findTrainingIssues(input: FindingInput): Finding[] {
	const {training, model, stats} = input;
	const out: Finding[] = [];
	checkMetadataPresence(training, out);
	if (model) {
		checkArch(training, model, out);
		checkDimAlpha(training, model, out);
	}

	checkLearningRates(training, model, out);
	checkScale(training, model, out);
	if (stats) {
		checkWeights(stats, model, out);
	}

	return out;
}
