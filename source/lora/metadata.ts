// Typed view of the training metadata kohya sd-scripts (and tools that imitate it) write into a
// LoRA's `__metadata__`: every ss_* key of ../shared/docs/peer-tools.md §5 plus modelspec.*.
//
// Rules: every value is untrusted text. "None" and "" mean unset (null, no error). "True"/"False" are
// booleans (lora-inspector's bool(str) turns "False" into true; we do not). Numbers are parsed strictly
// (Python float/int spellings only; NaN, inf and garbage give null plus a fieldError). Unix times become
// Dates. JSON values are parsed with errors contained per field, a size cap and a depth cap. Nothing here
// throws for any input map. Strings are kept raw: sanitise them at display time (sanitize.ts).

import {jsonDepth, replacePythonNonFinite} from './sanitize.js';
import type {Arch} from './types.js';

export type FieldError = {key: string; reason: string};

export type JsonValue = null | boolean | number | string | JsonValue[] | {[key: string]: JsonValue};

/** One tag of ss_tag_frequency: how many captions in `dir` contain it. */
export type TagCount = {dir: string; tag: string; count: number};

/** A tag summed over all dataset dirs. */
export type MergedTag = {tag: string; count: number; dirs: string[]};

export type DatasetDir = {dir: string; repeats: number | null; images: number | null; isReg: boolean};

export type Bucket = {resolution: [number, number]; count: number};

/** One subset of an `ss_datasets` entry (sd-scripts --dataset_config). */
export type DatasetSubset = {
	dir: string | null;
	repeats: number | null;
	images: number | null;
	isReg: boolean;
	classTokens: string | null;
	keepTokens: number | null;
	shuffleCaption: boolean | null;
	flipAug: boolean | null;
	colorAug: boolean | null;
	randomCrop: boolean | null;
	captionPrefix: string | null;
	captionSuffix: string | null;
};

/** One entry of `ss_datasets`. */
export type DatasetConfig = {
	isDreambooth: boolean | null;
	batchSizePerDevice: number | null;
	numTrainImages: number | null;
	numRegImages: number | null;
	resolution: [number, number] | null;
	enableBucket: boolean | null;
	minBucketReso: number | null;
	maxBucketReso: number | null;
	subsets: DatasetSubset[];
};

export type OptimizerArgValue = string | number | boolean | null;

/** SAI model spec (modelspec.*). */
export type ModelSpec = {
	saiModelSpec: string | null;
	architecture: string | null;
	implementation: string | null;
	title: string | null;
	description: string | null;
	author: string | null;
	date: Date | null;
	license: string | null;
	tags: string | null;
	usageHint: string | null;
	/** modelspec.trigger_phrase: the trigger the author declared (not derived from tags). */
	triggerPhrase: string | null;
	resolution: [number, number] | null;
	predictionType: string | null;
	timestepRange: string | null;
	encoderLayer: string | null;
	mergedFrom: string | null;
	preprocessor: string | null;
	isNegativeEmbedding: boolean | null;
	unetDtype: string | null;
	vaeDtype: string | null;
	hashSha256: string | null;
	/** True when modelspec.thumbnail is present (a data URI; never kept here). */
	hasThumbnail: boolean;
};

export type TrainingDerived = {
	/** ss_network_dim as a number (null when missing or "Dynamic"). */
	metadataDim: number | null;
	/** ss_network_alpha as a number (null when missing or "Dynamic"). */
	metadataAlpha: number | null;
	/** conv_dim / conv_rank of ss_network_args. */
	convDim: number | null;
	/** conv_alpha of ss_network_args. */
	convAlpha: number | null;
	/** LyCORIS `algo` of ss_network_args (lora, locon, loha, lokr, …). */
	algo: string | null;
	/** alpha / dim (the multiplier kohya applies to up·down). */
	scale: number | null;
	/** UNet learning rate in effect: ss_unet_lr, else ss_learning_rate. */
	effectiveUnetLr: number | null;
	/** Text-encoder learning rate in effect: ss_text_encoder_lr (largest of a list), else ss_learning_rate. */
	effectiveTextEncoderLr: number | null;
	/** Optimizer steps per epoch: ceil(batches per epoch / gradient accumulation). */
	stepsPerEpoch: number | null;
	/** Steps done when this file was saved: ss_steps, else epoch × steps per epoch, else ss_max_train_steps. */
	totalSteps: number | null;
	/** Σ images × repeats over the training (non-reg) dirs, else ss_num_train_images (which includes repeats). */
	imagesTimesRepeats: number | null;
	/** ss_total_batch_size when written (batch × processes × accumulation), else batch per device × accumulation. */
	effectiveBatchSize: number | null;
	/** ss_training_finished_at − ss_training_started_at. */
	durationSeconds: number | null;
	/**
	 * Trigger-word candidates from the tag histogram. Rule: merged tag count ÷ number of captions ≥ 0.5
	 * (the tag is in at least half of the captions), most frequent first, at most 5. Captions per dir =
	 * img_count of the matching dataset dir, else the dir's largest tag count.
	 */
	triggerCandidates: string[];
	/** Architecture the metadata claims (ss_base_model_version, else modelspec.architecture, else ss_v2). */
	metadataArch: Arch | null;
};

export type TrainingInfo = {
	/** Whether the map holds any ss_* key. */
	hasTrainingMetadata: boolean;
	/**
	 * 'none': no ss_* key; 'minimal': ss_* keys but no training settings (LR, optimizer, steps, epochs,
	 * image count), as with sd-scripts --no_metadata or ai-toolkit; 'full' otherwise.
	 */
	metadataLevel: 'none' | 'minimal' | 'full';
	/** Trainer that wrote the file, when it says so (`software` JSON of ai-toolkit, or sd-scripts). */
	software: {name: string; version: string | null} | null;

	// Run
	sessionId: string | null;
	trainingStartedAt: Date | null;
	trainingFinishedAt: Date | null;
	outputName: string | null;
	trainingComment: string | null;
	sdScriptsCommitHash: string | null;
	steps: number | null;
	epoch: number | null;

	// Base model
	sdModelName: string | null;
	sdModelHash: string | null;
	newSdModelHash: string | null;
	vaeName: string | null;
	vaeHash: string | null;
	newVaeHash: string | null;
	v2: boolean | null;
	baseModelVersion: string | null;
	clipSkip: number | null;
	maxTokenLength: number | null;

	// Network
	networkModule: string | null;
	networkDim: number | 'Dynamic' | null;
	networkAlpha: number | 'Dynamic' | null;
	networkDropout: number | null;
	networkArgs: Record<string, JsonValue> | null;

	// Optimisation
	learningRate: number | null;
	unetLr: number | null;
	/** First text-encoder LR (sd-scripts may write a list, one per encoder). */
	textEncoderLr: number | null;
	/** All text-encoder LRs when ss_text_encoder_lr is a list. */
	textEncoderLrs: number[] | null;
	/** Full ss_optimizer string, e.g. `bitsandbytes.optim.adamw.AdamW8bit(weight_decay=0.1)`. */
	optimizer: string | null;
	/** Class path without the args, e.g. `bitsandbytes.optim.adamw.AdamW8bit`. */
	optimizerName: string | null;
	/** Class name only, e.g. `AdamW8bit`. */
	optimizerShortName: string | null;
	/** `k=v` args from the parentheses of ss_optimizer (null when none were given). */
	optimizerArgs: Record<string, OptimizerArgValue> | null;
	lrScheduler: string | null;
	lrWarmupSteps: number | null;
	maxGradNorm: number | null;
	scaleWeightNorms: number | null;
	gradientAccumulationSteps: number | null;
	gradientCheckpointing: boolean | null;
	mixedPrecision: string | null;
	fullFp16: boolean | null;
	fp8Base: boolean | null;
	fp8BaseUnet: boolean | null;
	cacheLatents: boolean | null;
	seed: number | null;
	lowram: boolean | null;

	// Sizes
	numTrainImages: number | null;
	numValidationImages: number | null;
	numRegImages: number | null;
	numBatchesPerEpoch: number | null;
	numEpochs: number | null;
	maxTrainSteps: number | null;

	// Noise and loss
	noiseOffset: number | null;
	noiseOffsetRandomStrength: boolean | null;
	adaptiveNoiseScale: number | null;
	multiresNoiseIterations: number | null;
	multiresNoiseDiscount: number | null;
	ipNoiseGamma: number | null;
	ipNoiseGammaRandomStrength: boolean | null;
	minSnrGamma: number | null;
	zeroTerminalSnr: boolean | null;
	debiasedEstimation: boolean | null;
	lossType: string | null;
	huberSchedule: string | null;
	huberScale: number | null;
	huberC: number | null;
	priorLossWeight: number | null;

	// Captions
	captionDropoutRate: number | null;
	captionDropoutEveryNEpochs: number | null;
	captionTagDropoutRate: number | null;
	faceCropAugRange: string | null;

	// Validation
	validationSeed: number | null;
	validationSplit: number | null;
	maxValidationSteps: number | null;
	validateEveryNEpochs: number | null;
	validateEveryNSteps: number | null;

	// Dataset
	batchSizePerDevice: number | null;
	totalBatchSize: number | null;
	resolution: [number, number] | null;
	colorAug: boolean | null;
	flipAug: boolean | null;
	randomCrop: boolean | null;
	shuffleCaption: boolean | null;
	keepTokens: number | null;
	enableBucket: boolean | null;
	bucketNoUpscale: boolean | null;
	bucketFreeFit: boolean | null;
	minBucketReso: number | null;
	maxBucketReso: number | null;
	resizeInterpolation: string | null;
	/** mean_img_ar_error of ss_bucket_info. */
	meanImageAspectError: number | null;
	/** Parsed ss_datasets (empty when absent). */
	datasets: DatasetConfig[];

	// Architecture-specific (Flux / SD3)
	modelType: string | null;
	applyT5AttnMask: boolean | null;
	applyLgAttnMask: boolean | null;
	weightingScheme: string | null;
	logitMean: number | null;
	logitStd: number | null;
	modeScale: number | null;
	guidanceScale: number | null;
	timestepSampling: string | null;
	sigmoidScale: number | null;
	modelPredictionType: string | null;
	discreteFlowShift: number | null;

	// Hashes
	sshsModelHash: string | null;
	sshsLegacyHash: string | null;

	modelspec: ModelSpec;

	/** Every (dir, tag) pair of the tag histogram, most frequent first. */
	tags: TagCount[];
	/** Tags summed across dirs, most frequent first. */
	mergedTags: MergedTag[];
	/** Training and regularisation dirs. */
	dataset: DatasetDir[];
	/** Aspect-ratio buckets in bucket order (summed by resolution across datasets). */
	buckets: Bucket[];

	derived: TrainingDerived;
	/** Values that could not be read, one line each; the field is null. */
	fieldErrors: FieldError[];
};

/** JSON values above this many characters are not parsed (fieldError instead). */
export const maxJsonFieldChars = 16 * 1024 * 1024;
/** Tag entries kept from ss_tag_frequency; the rest are dropped with a fieldError. */
export const maxTagEntries = 200_000;

/** Keys that record how the run was trained; a map with ss_* keys but none of these is 'minimal'. */
const settingKeys = [
	'ss_learning_rate',
	'ss_unet_lr',
	'ss_text_encoder_lr',
	'ss_optimizer',
	'ss_steps',
	'ss_max_train_steps',
	'ss_num_epochs',
	'ss_num_train_images',
];

const numberPattern = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

/** Strict number parse: Python int/float spellings only. Returns undefined for anything else. */
export function parseStrictNumber(raw: string): number | undefined {
	const s = raw.trim();
	if (s.length > 64 || !numberPattern.test(s)) {
		return undefined;
	}

	const v = Number(s);
	return Number.isFinite(v) ? v : undefined;
}

function isUnset(raw: string | undefined): raw is undefined {
	if (raw === undefined) {
		return true;
	}

	const s = raw.trim();
	return s === '' || s === 'None' || s === 'null';
}

function describeJsonError(error: unknown): string {
	// V8's messages quote the input; keep only the position so no file content leaks into the reason.
	const message = error instanceof Error ? error.message : '';
	const position = /position (\d+)/.exec(message);
	return position ? `invalid JSON at position ${position[1]}` : 'invalid JSON';
}

function isRecord(v: unknown): v is Record<string, unknown> {
	return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function asFiniteNumber(v: unknown): number | null {
	if (typeof v === 'number' && Number.isFinite(v)) {
		return v;
	}

	if (typeof v === 'string') {
		return parseStrictNumber(v) ?? null;
	}

	return null;
}

function asCount(v: unknown): number | null {
	const n = asFiniteNumber(v);
	return n !== null && Number.isInteger(n) && n >= 0 ? n : null;
}

function asBool(v: unknown): boolean | null {
	if (typeof v === 'boolean') {
		return v;
	}

	if (v === 'True' || v === 'true') {
		return true;
	}

	if (v === 'False' || v === 'false') {
		return false;
	}

	return null;
}

function asString(v: unknown): string | null {
	return typeof v === 'string' && v !== '' ? v : null;
}

/** Parses "(768, 768)", "768,768", "[512, 512]", "1024x1024", "768" (square) or a JSON pair. */
export function parseResolution(v: unknown): [number, number] | null | undefined {
	if (Array.isArray(v)) {
		if (v.length === 2) {
			const w = asCount(v[0]);
			const h = asCount(v[1]);
			if (w !== null && h !== null) {
				return [w, h];
			}
		}

		return undefined;
	}

	if (typeof v === 'number') {
		return Number.isInteger(v) && v > 0 ? [v, v] : undefined;
	}

	if (typeof v !== 'string') {
		return undefined;
	}

	const s = v.trim();
	if (isUnset(s)) {
		return null;
	}

	const m = /^[([]?\s*(\d{1,6})\s*(?:[,x×]\s*(\d{1,6})\s*)?[)\]]?$/.exec(s);
	if (!m) {
		return undefined;
	}

	const w = Number(m[1]);
	const h = m[2] === undefined ? w : Number(m[2]);
	return [w, h];
}

/** Maps a base-model claim (ss_base_model_version or modelspec.architecture) to an Arch. */
export function archFromClaim(claim: string | null): Arch | null {
	if (!claim) {
		return null;
	}

	const s = claim.toLowerCase();
	if (s.includes('xl')) {
		return 'sdxl';
	}

	if (/flux|chroma/.test(s)) {
		return 'flux';
	}

	if (/sd3|sd_3|stable-diffusion-3|mmdit/.test(s)) {
		return 'sd3';
	}

	if (/sd_?v?2|stable-diffusion-v2|sd2/.test(s)) {
		return 'sd2';
	}

	if (/sd_?v?1|stable-diffusion-v1|sd1|sd_1/.test(s)) {
		return 'sd1';
	}

	return null;
}

/** Splits `a=1,b=(0.9,0.99),c='x'` at top-level commas. */
function splitTopLevel(s: string): string[] {
	const parts: string[] = [];
	let depth = 0;
	let quote = '';
	let start = 0;
	for (let i = 0; i < s.length; i++) {
		const c = s[i]!;
		if (quote) {
			if (c === '\\') {
				i++;
			} else if (c === quote) {
				quote = '';
			}

			continue;
		}

		if (c === '"' || c === "'") {
			quote = c;
		} else if (c === '(' || c === '[' || c === '{') {
			depth++;
		} else if (c === ')' || c === ']' || c === '}') {
			depth--;
		} else if (c === ',' && depth === 0) {
			parts.push(s.slice(start, i));
			start = i + 1;
		}
	}

	parts.push(s.slice(start));
	return parts.map(p => p.trim()).filter(p => p !== '');
}

function pythonLiteral(raw: string): OptimizerArgValue {
	const s = raw.trim();
	if (s === 'None') {
		return null;
	}

	const b = asBool(s);
	if (b !== null) {
		return b;
	}

	const n = parseStrictNumber(s);
	if (n !== undefined) {
		return n;
	}

	const quoted = /^(['"])(.*)\1$/s.exec(s);
	return quoted ? quoted[2]! : s;
}

/** Splits ss_optimizer (`name` or `name(k=v,k=v)`, as train_network.py writes it) into its parts. */
export function parseOptimizer(raw: string): {
	name: string;
	shortName: string;
	args: Record<string, OptimizerArgValue> | null;
} {
	const s = raw.trim();
	const open = s.indexOf('(');
	const name = (open >= 0 ? s.slice(0, open) : s).trim();
	const shortName = name.split('.').pop()!.trim() || name;
	if (open < 0) {
		return {name, shortName, args: null};
	}

	const body = s.slice(open + 1, s.endsWith(')') ? -1 : undefined);
	const entries: Array<[string, OptimizerArgValue]> = [];
	for (const part of splitTopLevel(body)) {
		const eq = part.indexOf('=');
		if (eq > 0) {
			entries.push([part.slice(0, eq).trim(), pythonLiteral(part.slice(eq + 1))]);
		} else {
			entries.push([part, true]);
		}
	}

	// Object.fromEntries defines own properties, so a `__proto__` arg stays an ordinary key.
	return {name, shortName, args: Object.fromEntries(entries)};
}

/** Reads one raw map with per-field error collection. */
class FieldReader {
	readonly errors: FieldError[] = [];
	private readonly meta: Record<string, string>;

	constructor(meta: Record<string, string>) {
		this.meta = meta;
	}

	raw(key: string): string | undefined {
		const v = Object.hasOwn(this.meta, key) ? this.meta[key] : undefined;
		return typeof v === 'string' ? v : undefined;
	}

	fail(key: string, reason: string): null {
		this.errors.push({key, reason});
		return null;
	}

	str(key: string): string | null {
		const v = this.raw(key);
		return isUnset(v) ? null : v;
	}

	num(key: string): number | null {
		const v = this.raw(key);
		if (isUnset(v)) {
			return null;
		}

		const n = parseStrictNumber(v);
		if (n !== undefined) {
			return n;
		}

		const t = v.trim().toLowerCase();
		return this.fail(key, t === 'nan' || t.endsWith('inf') || t.endsWith('infinity') ? 'not a finite number' : 'not a number');
	}

	int(key: string): number | null {
		const n = this.num(key);
		if (n === null) {
			return null;
		}

		return Number.isSafeInteger(n) ? n : this.fail(key, 'not a whole number');
	}

	bool(key: string): boolean | null {
		const v = this.raw(key);
		if (isUnset(v)) {
			return null;
		}

		const b = asBool(v.trim());
		return b ?? this.fail(key, 'not True or False');
	}

	/** Unix seconds (sd-scripts writes time.time()); ISO dates are accepted too. */
	date(key: string): Date | null {
		const v = this.raw(key);
		if (isUnset(v)) {
			return null;
		}

		const n = parseStrictNumber(v);
		let ms: number;
		if (n === undefined) {
			if (!/^\d{4}-\d{2}-\d{2}/.test(v.trim())) {
				return this.fail(key, 'not a unix time');
			}

			ms = Date.parse(v.trim());
		} else {
			ms = n * 1000;
		}

		// Between 2000 and 2100: anything else is not a training date.
		if (!Number.isFinite(ms) || ms < 946_684_800_000 || ms > 4_102_444_800_000) {
			return this.fail(key, 'implausible date');
		}

		return new Date(ms);
	}

	dim(key: string): number | 'Dynamic' | null {
		const v = this.raw(key);
		if (!isUnset(v) && v.trim() === 'Dynamic') {
			return 'Dynamic';
		}

		return this.num(key);
	}

	resolution(key: string): [number, number] | null {
		const v = this.raw(key);
		if (isUnset(v)) {
			return null;
		}

		const r = parseResolution(v);
		return r === undefined ? this.fail(key, 'not a resolution') : r;
	}

	/** Parsed JSON, or undefined when unset or broken (broken adds a fieldError). */
	json(key: string): unknown {
		const v = this.raw(key);
		if (isUnset(v)) {
			return undefined;
		}

		if (v.length > maxJsonFieldChars) {
			this.fail(key, `JSON value too large (${v.length} characters)`);
			return undefined;
		}

		let value: unknown;
		try {
			value = JSON.parse(v);
		} catch (error) {
			try {
				value = JSON.parse(replacePythonNonFinite(v));
			} catch {
				this.fail(key, describeJsonError(error));
				return undefined;
			}
		}

		if (value !== null && typeof value === 'object' && jsonDepth(value) === Number.POSITIVE_INFINITY) {
			this.fail(key, 'JSON nested too deeply or too many values');
			return undefined;
		}

		return value;
	}
}

function parseTagFrequency(value: unknown, key: string, reader: FieldReader, into: TagCount[]): void {
	if (value === undefined || value === null) {
		return;
	}

	if (!isRecord(value)) {
		reader.fail(key, 'not a {dir: {tag: count}} object');
		return;
	}

	let bad = 0;
	let dropped = 0;
	for (const [dir, tags] of Object.entries(value)) {
		if (!isRecord(tags)) {
			bad++;
			continue;
		}

		for (const [tag, rawCount] of Object.entries(tags)) {
			const count = asCount(rawCount);
			if (count === null) {
				bad++;
				continue;
			}

			if (into.length >= maxTagEntries) {
				dropped++;
				continue;
			}

			into.push({dir, tag, count});
		}
	}

	if (bad > 0) {
		reader.fail(key, `${bad} entr${bad === 1 ? 'y is' : 'ies are'} not a tag count`);
	}

	if (dropped > 0) {
		reader.fail(key, `${dropped} tags beyond the first ${maxTagEntries} were dropped`);
	}
}

function parseDatasetDirs(value: unknown, key: string, isReg: boolean, reader: FieldReader): DatasetDir[] {
	if (value === undefined || value === null) {
		return [];
	}

	if (!isRecord(value)) {
		reader.fail(key, 'not a {dir: {n_repeats, img_count}} object');
		return [];
	}

	const dirs: DatasetDir[] = [];
	let bad = 0;
	for (const [dir, info] of Object.entries(value)) {
		if (!isRecord(info)) {
			bad++;
			continue;
		}

		const repeats = asCount(info['n_repeats']);
		const images = asCount(info['img_count']);
		if ((info['n_repeats'] !== undefined && repeats === null) || (info['img_count'] !== undefined && images === null)) {
			bad++;
		}

		dirs.push({dir, repeats, images, isReg});
	}

	if (bad > 0) {
		reader.fail(key, `${bad} dir entr${bad === 1 ? 'y has' : 'ies have'} unreadable counts`);
	}

	return dirs;
}

function parseBucketInfo(value: unknown, key: string, reader: FieldReader, into: Map<string, Bucket>): number | null {
	if (value === undefined || value === null) {
		return null;
	}

	if (!isRecord(value)) {
		reader.fail(key, 'not a {buckets: …} object');
		return null;
	}

	const buckets = value['buckets'];
	let bad = 0;
	if (isRecord(buckets) || Array.isArray(buckets)) {
		const entries = Object.entries(buckets).sort((a, b) => Number(a[0]) - Number(b[0]));
		for (const [, bucket] of entries) {
			const resolution = isRecord(bucket) ? parseResolution(bucket['resolution']) : undefined;
			const count = isRecord(bucket) ? asCount(bucket['count']) : null;
			if (!resolution || count === null) {
				bad++;
				continue;
			}

			const id = `${resolution[0]}x${resolution[1]}`;
			const existing = into.get(id);
			if (existing) {
				existing.count += count;
			} else {
				into.set(id, {resolution, count});
			}
		}
	} else if (buckets !== undefined) {
		bad++;
	}

	if (bad > 0) {
		reader.fail(key, `${bad} bucket entr${bad === 1 ? 'y is' : 'ies are'} unreadable`);
	}

	return asFiniteNumber(value['mean_img_ar_error']);
}

function parseDatasets(value: unknown, key: string, reader: FieldReader): {configs: DatasetConfig[]; raw: Array<Record<string, unknown>>} {
	if (value === undefined || value === null) {
		return {configs: [], raw: []};
	}

	if (!Array.isArray(value)) {
		reader.fail(key, 'not a list of datasets');
		return {configs: [], raw: []};
	}

	const configs: DatasetConfig[] = [];
	const raw: Array<Record<string, unknown>> = [];
	let bad = 0;
	for (const ds of value) {
		if (!isRecord(ds)) {
			bad++;
			continue;
		}

		raw.push(ds);
		const subsets: DatasetSubset[] = [];
		for (const sub of Array.isArray(ds['subsets']) ? ds['subsets'] : []) {
			if (!isRecord(sub)) {
				bad++;
				continue;
			}

			subsets.push({
				dir: asString(sub['image_dir']) ?? asString(sub['metadata_file']),
				repeats: asCount(sub['num_repeats']),
				images: asCount(sub['img_count']),
				isReg: asBool(sub['is_reg']) ?? false,
				classTokens: asString(sub['class_tokens']),
				keepTokens: asCount(sub['keep_tokens']),
				shuffleCaption: asBool(sub['shuffle_caption']),
				flipAug: asBool(sub['flip_aug']),
				colorAug: asBool(sub['color_aug']),
				randomCrop: asBool(sub['random_crop']),
				captionPrefix: asString(sub['caption_prefix']),
				captionSuffix: asString(sub['caption_suffix']),
			});
		}

		configs.push({
			isDreambooth: asBool(ds['is_dreambooth']),
			batchSizePerDevice: asCount(ds['batch_size_per_device']),
			numTrainImages: asCount(ds['num_train_images']),
			numRegImages: asCount(ds['num_reg_images']),
			resolution: parseResolution(ds['resolution']) ?? null,
			enableBucket: asBool(ds['enable_bucket']),
			minBucketReso: asCount(ds['min_bucket_reso']),
			maxBucketReso: asCount(ds['max_bucket_reso']),
			subsets,
		});
	}

	if (bad > 0) {
		reader.fail(key, `${bad} dataset entr${bad === 1 ? 'y is' : 'ies are'} unreadable`);
	}

	return {configs, raw};
}

function mergeTags(tags: TagCount[]): MergedTag[] {
	const merged = new Map<string, MergedTag>();
	for (const {dir, tag, count} of tags) {
		const m = merged.get(tag);
		if (m) {
			m.count += count;
			if (!m.dirs.includes(dir)) {
				m.dirs.push(dir);
			}
		} else {
			merged.set(tag, {tag, count, dirs: [dir]});
		}
	}

	return [...merged.values()].sort((a, b) => b.count - a.count || compareText(a.tag, b.tag));
}

function compareText(a: string, b: string): number {
	return a < b ? -1 : a > b ? 1 : 0;
}

/** See TrainingDerived.triggerCandidates for the rule. */
function triggerCandidatesOf(tags: TagCount[], mergedTags: MergedTag[], dataset: DatasetDir[]): string[] {
	if (mergedTags.length === 0) {
		return [];
	}

	const imagesByDir = new Map<string, number>();
	for (const d of dataset) {
		if (!d.isReg && d.images !== null) {
			imagesByDir.set(d.dir, d.images);
		}
	}

	const maxCountByDir = new Map<string, number>();
	for (const {dir, count} of tags) {
		maxCountByDir.set(dir, Math.max(maxCountByDir.get(dir) ?? 0, count));
	}

	let captions = 0;
	for (const [dir, maxCount] of maxCountByDir) {
		captions += imagesByDir.get(dir) ?? maxCount;
	}

	if (captions <= 0) {
		return [];
	}

	return mergedTags
		.filter(t => t.count / captions >= 0.5)
		.slice(0, 5)
		.map(t => t.tag);
}

function parseModelSpec(r: FieldReader): ModelSpec {
	const date = r.raw('modelspec.date');
	let parsedDate: Date | null = null;
	if (!isUnset(date)) {
		const n = parseStrictNumber(date);
		const ms = n === undefined ? Date.parse(date.trim()) : n * 1000;
		parsedDate = Number.isFinite(ms) && Math.abs(ms) < 8.64e15 ? new Date(ms) : r.fail('modelspec.date', 'not a date');
	}

	return {
		saiModelSpec: r.str('modelspec.sai_model_spec'),
		architecture: r.str('modelspec.architecture'),
		implementation: r.str('modelspec.implementation'),
		title: r.str('modelspec.title'),
		description: r.str('modelspec.description'),
		author: r.str('modelspec.author'),
		date: parsedDate,
		license: r.str('modelspec.license'),
		tags: r.str('modelspec.tags'),
		usageHint: r.str('modelspec.usage_hint'),
		triggerPhrase: r.str('modelspec.trigger_phrase'),
		resolution: r.resolution('modelspec.resolution'),
		predictionType: r.str('modelspec.prediction_type'),
		timestepRange: r.str('modelspec.timestep_range'),
		encoderLayer: r.str('modelspec.encoder_layer'),
		mergedFrom: r.str('modelspec.merged_from'),
		preprocessor: r.str('modelspec.preprocessor'),
		isNegativeEmbedding: r.bool('modelspec.is_negative_embedding'),
		unetDtype: r.str('modelspec.unet_dtype'),
		vaeDtype: r.str('modelspec.vae_dtype'),
		hashSha256: r.str('modelspec.hash_sha256'),
		hasThumbnail: !isUnset(r.raw('modelspec.thumbnail')),
	};
}

function parseTextEncoderLr(r: FieldReader): {first: number | null; all: number[] | null} {
	const key = 'ss_text_encoder_lr';
	const v = r.raw(key);
	if (isUnset(v)) {
		return {first: null, all: null};
	}

	const s = v.trim();
	if (s.startsWith('[')) {
		// Newer sd-scripts accept one LR per text encoder and write str(list).
		const items = s.slice(1, s.endsWith(']') ? -1 : undefined).split(',').map(x => x.trim()).filter(x => x !== '');
		const all: number[] = [];
		for (const item of items) {
			const n = parseStrictNumber(item);
			if (n === undefined) {
				r.fail(key, 'not a number or list of numbers');
				return {first: null, all: null};
			}

			all.push(n);
		}

		return {first: all[0] ?? null, all};
	}

	const first = r.num(key);
	return {first, all: first === null ? null : [first]};
}

function parseNetworkArgs(r: FieldReader): Record<string, JsonValue> | null {
	const value = r.json('ss_network_args');
	if (value === undefined || value === null) {
		return null;
	}

	if (!isRecord(value)) {
		r.fail('ss_network_args', 'not a JSON object');
		return null;
	}

	return value as Record<string, JsonValue>;
}

function parseSoftware(r: FieldReader): {name: string; version: string | null} | null {
	const software = r.raw('software');
	if (!isUnset(software) && software.length < 10_000) {
		try {
			const v: unknown = JSON.parse(software);
			if (isRecord(v) && typeof v['name'] === 'string') {
				return {name: v['name'], version: typeof v['version'] === 'string' ? v['version'] : null};
			}
		} catch {
			// A free-text `software` value is not an error: other tools write plain names.
			return {name: software, version: null};
		}
	}

	if (r.raw('ss_sd_scripts_commit_hash') !== undefined) {
		return {name: 'kohya sd-scripts', version: r.str('ss_sd_scripts_commit_hash')};
	}

	return null;
}

/** Typed training facts of a metadata map. Never throws; unreadable values end up in fieldErrors. */
export function parseTraining(metadata: Record<string, string>): TrainingInfo {
	const meta = metadata !== null && typeof metadata === 'object' ? metadata : {};
	const r = new FieldReader(meta);
	const ssKeys = Object.keys(meta).filter(k => k.startsWith('ss_'));
	const hasTrainingMetadata = ssKeys.length > 0;
	const recordsSettings = settingKeys.some(k => r.raw(k) !== undefined);
	const metadataLevel = !hasTrainingMetadata ? 'none' : recordsSettings ? 'full' : 'minimal';

	const optimizerRaw = r.str('ss_optimizer');
	const optimizer = optimizerRaw === null ? null : parseOptimizer(optimizerRaw);
	const te = parseTextEncoderLr(r);
	const networkArgs = parseNetworkArgs(r);

	// Tags: ss_tag_frequency, else the tag_frequency of each ss_datasets entry.
	const datasets = parseDatasets(r.json('ss_datasets'), 'ss_datasets', r);
	const tags: TagCount[] = [];
	const tagFrequency = r.json('ss_tag_frequency');
	if (tagFrequency === undefined || tagFrequency === null) {
		for (const ds of datasets.raw) {
			parseTagFrequency(ds['tag_frequency'], 'ss_datasets', r, tags);
		}
	} else {
		parseTagFrequency(tagFrequency, 'ss_tag_frequency', r, tags);
	}

	tags.sort((a, b) => b.count - a.count || compareText(a.tag, b.tag) || compareText(a.dir, b.dir));
	const mergedTags = mergeTags(tags);

	// Dataset dirs: ss_datasets subsets (they include reg dirs) when present, else the legacy dir maps.
	const legacyDirs = parseDatasetDirs(r.json('ss_dataset_dirs'), 'ss_dataset_dirs', false, r);
	const regDirs = parseDatasetDirs(r.json('ss_reg_dataset_dirs'), 'ss_reg_dataset_dirs', true, r);
	const subsets = datasets.configs.flatMap(c => c.subsets);
	const dataset: DatasetDir[] =
		subsets.length > 0
			? subsets.map((s, i) => ({dir: s.dir ?? `subset ${i + 1}`, repeats: s.repeats, images: s.images, isReg: s.isReg}))
			: [...legacyDirs, ...regDirs];

	// Buckets: ss_bucket_info, else each dataset's bucket_info.
	const bucketMap = new Map<string, Bucket>();
	let meanImageAspectError = parseBucketInfo(r.json('ss_bucket_info'), 'ss_bucket_info', r, bucketMap);
	if (bucketMap.size === 0) {
		for (const ds of datasets.raw) {
			const e = parseBucketInfo(ds['bucket_info'], 'ss_datasets', r, bucketMap);
			meanImageAspectError ??= e;
		}
	}

	// ai-toolkit writes `training_info` {"step", "epoch"} instead of ss_steps/ss_epoch.
	let steps = r.int('ss_steps');
	let epoch = r.int('ss_epoch');
	const trainingInfo = r.raw('training_info');
	if ((steps === null || epoch === null) && !isUnset(trainingInfo) && trainingInfo.length < 10_000) {
		try {
			const v: unknown = JSON.parse(trainingInfo);
			if (isRecord(v)) {
				steps ??= asCount(v['step']);
				epoch ??= asCount(v['epoch']);
			}
		} catch {
			r.fail('training_info', 'invalid JSON');
		}
	}

	const firstDataset = datasets.configs[0];
	const info: Omit<TrainingInfo, 'derived' | 'fieldErrors'> = {
		hasTrainingMetadata,
		metadataLevel,
		software: parseSoftware(r),
		sessionId: r.str('ss_session_id'),
		trainingStartedAt: r.date('ss_training_started_at'),
		trainingFinishedAt: r.date('ss_training_finished_at'),
		outputName: r.str('ss_output_name'),
		trainingComment: r.str('ss_training_comment'),
		sdScriptsCommitHash: r.str('ss_sd_scripts_commit_hash'),
		steps,
		epoch,
		sdModelName: r.str('ss_sd_model_name'),
		sdModelHash: r.str('ss_sd_model_hash'),
		newSdModelHash: r.str('ss_new_sd_model_hash'),
		vaeName: r.str('ss_vae_name'),
		vaeHash: r.str('ss_vae_hash'),
		newVaeHash: r.str('ss_new_vae_hash'),
		v2: r.bool('ss_v2'),
		baseModelVersion: r.str('ss_base_model_version'),
		clipSkip: r.int('ss_clip_skip'),
		maxTokenLength: r.int('ss_max_token_length'),
		networkModule: r.str('ss_network_module'),
		networkDim: r.dim('ss_network_dim'),
		networkAlpha: r.dim('ss_network_alpha'),
		networkDropout: r.num('ss_network_dropout'),
		networkArgs,
		learningRate: r.num('ss_learning_rate'),
		unetLr: r.num('ss_unet_lr'),
		textEncoderLr: te.first,
		textEncoderLrs: te.all,
		optimizer: optimizerRaw,
		optimizerName: optimizer?.name ?? null,
		optimizerShortName: optimizer?.shortName ?? null,
		optimizerArgs: optimizer?.args ?? null,
		lrScheduler: r.str('ss_lr_scheduler'),
		lrWarmupSteps: r.num('ss_lr_warmup_steps'),
		maxGradNorm: r.num('ss_max_grad_norm'),
		scaleWeightNorms: r.num('ss_scale_weight_norms'),
		gradientAccumulationSteps: r.int('ss_gradient_accumulation_steps'),
		gradientCheckpointing: r.bool('ss_gradient_checkpointing'),
		mixedPrecision: r.str('ss_mixed_precision'),
		fullFp16: r.bool('ss_full_fp16'),
		fp8Base: r.bool('ss_fp8_base'),
		fp8BaseUnet: r.bool('ss_fp8_base_unet'),
		cacheLatents: r.bool('ss_cache_latents'),
		seed: r.int('ss_seed'),
		lowram: r.bool('ss_lowram'),
		numTrainImages: r.int('ss_num_train_images'),
		numValidationImages: r.int('ss_num_validation_images'),
		numRegImages: r.int('ss_num_reg_images'),
		numBatchesPerEpoch: r.int('ss_num_batches_per_epoch'),
		numEpochs: r.int('ss_num_epochs'),
		maxTrainSteps: r.int('ss_max_train_steps'),
		noiseOffset: r.num('ss_noise_offset'),
		noiseOffsetRandomStrength: r.bool('ss_noise_offset_random_strength'),
		adaptiveNoiseScale: r.num('ss_adaptive_noise_scale'),
		multiresNoiseIterations: r.int('ss_multires_noise_iterations'),
		multiresNoiseDiscount: r.num('ss_multires_noise_discount'),
		ipNoiseGamma: r.num('ss_ip_noise_gamma'),
		ipNoiseGammaRandomStrength: r.bool('ss_ip_noise_gamma_random_strength'),
		minSnrGamma: r.num('ss_min_snr_gamma'),
		zeroTerminalSnr: r.bool('ss_zero_terminal_snr'),
		debiasedEstimation: r.bool('ss_debiased_estimation'),
		lossType: r.str('ss_loss_type'),
		huberSchedule: r.str('ss_huber_schedule'),
		huberScale: r.num('ss_huber_scale'),
		huberC: r.num('ss_huber_c'),
		priorLossWeight: r.num('ss_prior_loss_weight'),
		captionDropoutRate: r.num('ss_caption_dropout_rate'),
		captionDropoutEveryNEpochs: r.int('ss_caption_dropout_every_n_epochs'),
		captionTagDropoutRate: r.num('ss_caption_tag_dropout_rate'),
		faceCropAugRange: r.str('ss_face_crop_aug_range'),
		validationSeed: r.int('ss_validation_seed'),
		validationSplit: r.num('ss_validation_split'),
		maxValidationSteps: r.int('ss_max_validation_steps'),
		validateEveryNEpochs: r.int('ss_validate_every_n_epochs'),
		validateEveryNSteps: r.int('ss_validate_every_n_steps'),
		batchSizePerDevice: r.int('ss_batch_size_per_device') ?? firstDataset?.batchSizePerDevice ?? null,
		totalBatchSize: r.int('ss_total_batch_size'),
		resolution: r.resolution('ss_resolution') ?? firstDataset?.resolution ?? null,
		colorAug: r.bool('ss_color_aug'),
		flipAug: r.bool('ss_flip_aug'),
		randomCrop: r.bool('ss_random_crop'),
		shuffleCaption: r.bool('ss_shuffle_caption'),
		keepTokens: r.int('ss_keep_tokens'),
		enableBucket: r.bool('ss_enable_bucket') ?? firstDataset?.enableBucket ?? null,
		bucketNoUpscale: r.bool('ss_bucket_no_upscale'),
		bucketFreeFit: r.bool('ss_bucket_free_fit'),
		minBucketReso: r.int('ss_min_bucket_reso') ?? firstDataset?.minBucketReso ?? null,
		maxBucketReso: r.int('ss_max_bucket_reso') ?? firstDataset?.maxBucketReso ?? null,
		resizeInterpolation: r.str('ss_resize_interpolation'),
		meanImageAspectError,
		datasets: datasets.configs,
		modelType: r.str('ss_model_type'),
		applyT5AttnMask: r.bool('ss_apply_t5_attn_mask'),
		applyLgAttnMask: r.bool('ss_apply_lg_attn_mask'),
		weightingScheme: r.str('ss_weighting_scheme'),
		logitMean: r.num('ss_logit_mean'),
		logitStd: r.num('ss_logit_std'),
		modeScale: r.num('ss_mode_scale'),
		guidanceScale: r.num('ss_guidance_scale'),
		timestepSampling: r.str('ss_timestep_sampling'),
		sigmoidScale: r.num('ss_sigmoid_scale'),
		modelPredictionType: r.str('ss_model_prediction_type'),
		discreteFlowShift: r.num('ss_discrete_flow_shift'),
		sshsModelHash: r.str('sshs_model_hash'),
		sshsLegacyHash: r.str('sshs_legacy_hash'),
		modelspec: parseModelSpec(r),
		tags,
		mergedTags,
		dataset,
		buckets: [...bucketMap.values()],
	};

	return {...info, derived: derive(info, networkArgs, r), fieldErrors: r.errors};
}

function argNumber(args: Record<string, JsonValue> | null, names: string[], r: FieldReader): number | null {
	if (!args) {
		return null;
	}

	for (const name of names) {
		if (Object.hasOwn(args, name)) {
			const v = args[name];
			if (v === null || v === 'None') {
				return null;
			}

			const n = asFiniteNumber(v);
			return n ?? r.fail('ss_network_args', `${name} is not a number`);
		}
	}

	return null;
}

function derive(info: Omit<TrainingInfo, 'derived' | 'fieldErrors'>, args: Record<string, JsonValue> | null, r: FieldReader): TrainingDerived {
	const metadataDim = typeof info.networkDim === 'number' ? info.networkDim : null;
	const metadataAlpha = typeof info.networkAlpha === 'number' ? info.networkAlpha : null;
	const scale = metadataDim !== null && metadataDim > 0 && metadataAlpha !== null ? metadataAlpha / metadataDim : null;

	const effectiveUnetLr = info.unetLr ?? info.learningRate;
	const teLrs = info.textEncoderLrs;
	const effectiveTextEncoderLr = teLrs && teLrs.length > 0 ? Math.max(...teLrs) : info.learningRate;

	const accumulation = info.gradientAccumulationSteps ?? 1;
	const stepsPerEpoch =
		info.numBatchesPerEpoch !== null && accumulation > 0 ? Math.ceil(info.numBatchesPerEpoch / accumulation) : null;
	const totalSteps =
		info.steps ?? (info.epoch !== null && stepsPerEpoch !== null ? info.epoch * stepsPerEpoch : info.maxTrainSteps);

	const trainDirs = info.dataset.filter(d => !d.isReg);
	const allKnown = trainDirs.length > 0 && trainDirs.every(d => d.images !== null && d.repeats !== null);
	const imagesTimesRepeats = allKnown
		? trainDirs.reduce((sum, d) => sum + d.images! * d.repeats!, 0)
		: info.numTrainImages;

	const effectiveBatchSize =
		info.totalBatchSize ?? (info.batchSizePerDevice === null ? null : info.batchSizePerDevice * accumulation);

	const durationSeconds =
		info.trainingStartedAt && info.trainingFinishedAt
			? Math.max(0, (info.trainingFinishedAt.getTime() - info.trainingStartedAt.getTime()) / 1000)
			: null;

	const algoValue = args && Object.hasOwn(args, 'algo') ? args['algo'] : null;

	return {
		metadataDim,
		metadataAlpha,
		convDim: argNumber(args, ['conv_dim', 'conv_rank'], r),
		convAlpha: argNumber(args, ['conv_alpha'], r),
		algo: typeof algoValue === 'string' ? algoValue : null,
		scale,
		effectiveUnetLr,
		effectiveTextEncoderLr,
		stepsPerEpoch,
		totalSteps,
		imagesTimesRepeats,
		effectiveBatchSize,
		durationSeconds,
		triggerCandidates: triggerCandidatesOf(info.tags, info.mergedTags, info.dataset),
		metadataArch:
			archFromClaim(info.baseModelVersion) ??
			archFromClaim(info.modelspec.architecture) ??
			(info.v2 === true ? 'sd2' : null),
	};
}
