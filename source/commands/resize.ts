// `lorascope resize <lora>... (--rank N | --method M --param X | --recipe R...)`: reduce the rank
// of LoRA files through the engine worker. Each file is decomposed once; every method or recipe
// given reuses that decomposition. Progress goes to stderr when it is a terminal; Ctrl+C cancels
// the running job (no output file is left under its name).
// Exit codes: 0 done, 1 a file failed, 2 usage error, 130 cancelled.
import {mkdir} from 'node:fs/promises';
import path from 'node:path';
import process from 'node:process';
import {parseArgs} from 'node:util';
import {EngineClient, type ProgressEvent} from '../engine/client.js';
import {isDevicePreference} from '../engine/device.js';
import type {BaseNormsNeed, BaseNormsResult} from '../engine/jobs/base-norms.js';
import type {ResizeWriteResult} from '../engine/jobs/resize-write.js';
import {CancelledError, type DevicePreference} from '../engine/protocol.js';
import {describeMethod, parseRecipe, ResizeMethodError, validateMethod, type BaseNorm, type KohyaDynamicMethod, type ResizeMethod} from '../lora/resize-plan.js';
import {errorReason} from '../lora/safetensors.js';
import {sanitizeLine} from '../lora/sanitize.js';
import {cleanStaleTempFiles} from '../lora/writer.js';
import {jsonForTerminal} from './meta.js';

const usage = `Usage:
  lorascope resize <lora.safetensors>... --rank N [--conv-rank N]
  lorascope resize <lora>... --method sv_ratio|sv_fro|sv_cumulative --param X [--rank N] [--conv-rank N]
  lorascope resize <lora>... --recipe 'spn_ckpt=1,thr=-1.2' [--recipe ...] [--base checkpoint.safetensors]
  options: [-o dir] [--dtype fp16|bf16|fp32] [--device auto|cpu|cuda] [--json] [--overwrite]

kohya methods follow sd-scripts resize_lora (dynamic methods keep one more singular value than
needed; --rank caps them, --conv-rank caps every conv module). Recipes follow elias-gaeros
resize_lora: spn_lora, fro_lora, spn_ckpt, fro_ckpt, subspace, params weights with thr=<log10>
or size=<MiB>; spn_ckpt / fro_ckpt / subspace need --base (subspace scores each singular value
by |uᵢᵀ·W_base·vᵢ|, which reads every mapped base weight). Output: <name>_<method><param>.safetensors next to
the source (or in -o dir), same key names and dtype as the input, never over an existing file
unless --overwrite.
`;

class UsageError extends Error {}

const dtypes: Record<string, 'F16' | 'BF16' | 'F32'> = {
	fp16: 'F16',
	f16: 'F16',
	float16: 'F16',
	bf16: 'BF16',
	bfloat16: 'BF16',
	fp32: 'F32',
	f32: 'F32',
	float: 'F32',
	float32: 'F32',
};

type Options = {
	files: string[];
	methods: ResizeMethod[];
	base?: string;
	outDir?: string;
	dtype?: 'F16' | 'BF16' | 'F32';
	device: DevicePreference;
	json: boolean;
	overwrite: boolean;
};

function positiveInteger(text: string | undefined, flag: string): number | undefined {
	if (text === undefined) {
		return undefined;
	}

	const value = Number(text);
	if (!Number.isInteger(value) || value < 1) {
		throw new UsageError(`${flag} needs a whole number ≥ 1 (got ${JSON.stringify(text)})`);
	}

	return value;
}

export function parseResizeArgs(argv: string[]): Options | 'help' {
	const {values, positionals} = parseArgs({
		args: argv,
		allowPositionals: true,
		strict: true,
		options: {
			rank: {type: 'string'},
			'conv-rank': {type: 'string'},
			method: {type: 'string'},
			param: {type: 'string'},
			recipe: {type: 'string', multiple: true},
			base: {type: 'string'},
			output: {type: 'string', short: 'o'},
			dtype: {type: 'string'},
			device: {type: 'string'},
			json: {type: 'boolean'},
			overwrite: {type: 'boolean'},
			help: {type: 'boolean', short: 'h'},
		},
	});
	if (values.help) {
		return 'help';
	}

	if (positionals.length === 0) {
		throw new UsageError('give at least one LoRA file');
	}

	const rank = positiveInteger(values.rank, '--rank');
	const convRank = positiveInteger(values['conv-rank'], '--conv-rank');
	const recipes = values.recipe ?? [];
	const methods: ResizeMethod[] = [];
	if (recipes.length > 0) {
		if (values.method !== undefined || rank !== undefined || convRank !== undefined) {
			throw new UsageError('--recipe cannot be combined with --method, --rank or --conv-rank');
		}

		for (const recipe of recipes) {
			methods.push(parseRecipe(recipe));
		}
	} else if (values.method === undefined) {
		if (rank === undefined) {
			throw new UsageError('choose --rank N, --method M --param X, or --recipe R');
		}

		if (values.param !== undefined) {
			throw new UsageError('--param needs --method');
		}

		methods.push(convRank === undefined ? {method: 'rank', rank} : {method: 'rank', rank, convRank});
	} else {
		const method = values.method;
		if (method !== 'sv_ratio' && method !== 'sv_fro' && method !== 'sv_cumulative') {
			throw new UsageError(`--method must be sv_ratio, sv_fro or sv_cumulative (got ${JSON.stringify(method)})`);
		}

		const param = values.param === undefined ? Number.NaN : Number(values.param);
		if (values.param === undefined || !Number.isFinite(param)) {
			throw new UsageError(`--method ${method} needs --param <number>`);
		}

		const dynamic: ResizeMethod = {method: method satisfies KohyaDynamicMethod, param};
		if (rank !== undefined) {
			dynamic.rank = rank;
		}

		if (convRank !== undefined) {
			dynamic.convRank = convRank;
		}

		methods.push(dynamic);
	}

	for (const method of methods) {
		// The base is checked per file once its norms exist; everything else is checked now.
		validateMethod(method, {base: values.base === undefined ? undefined : {}});
	}

	if (values.base !== undefined && recipes.length === 0) {
		throw new UsageError('--base is only used by --recipe');
	}

	let dtype: Options['dtype'];
	if (values.dtype !== undefined) {
		dtype = dtypes[values.dtype.toLowerCase()];
		if (!dtype) {
			throw new UsageError(`--dtype must be fp16, bf16 or fp32 (got ${JSON.stringify(values.dtype)})`);
		}
	}

	const device = values.device ?? 'auto';
	if (!isDevicePreference(device)) {
		throw new UsageError(`--device must be auto, cpu or cuda (got ${JSON.stringify(device)})`);
	}

	return {
		files: positionals,
		methods,
		base: values.base,
		outDir: values.output,
		dtype,
		device,
		json: values.json ?? false,
		overwrite: values.overwrite ?? false,
	};
}

/**
 * Which base norms the recipes need: σ_max (Lanczos, tens of seconds on an SDXL base) only for
 * spn_ckpt; fro_ckpt alone needs ‖W‖_F, a stream at read speed. Any non-zero spn_ckpt weight asks
 * for both, so the plan never lacks a norm it uses.
 */
export function baseNormsNeed(methods: readonly ResizeMethod[]): BaseNormsNeed {
	return methods.some(m => m.method === 'recipe' && m.weights.spn_ckpt !== 0) ? 'both' : 'frobenius';
}

/** Whether any recipe scores by uᵢᵀ·W_base·vᵢ (base-norms job with subspace: true). */
export function needsSubspace(methods: readonly ResizeMethod[]): boolean {
	return methods.some(m => m.method === 'recipe' && Math.abs(m.weights.subspace) > 1e-6);
}

/** One status line on a terminal: rewritten in place, throttled, cleared at the end. */
class ProgressLine {
	private readonly enabled: boolean;
	private last = 0;
	private shown = false;

	constructor(enabled: boolean) {
		this.enabled = enabled;
	}

	update(prefix: string, event: ProgressEvent): void {
		if (!this.enabled) {
			return;
		}

		const now = performance.now();
		if (now - this.last < 80 && event.done < event.total) {
			return;
		}

		this.last = now;
		const percent = event.total > 0 ? Math.floor(100 * event.done / event.total) : 0;
		const rate = event.bytesPerSecond === undefined ? '' : ` ${(event.bytesPerSecond / 1024 / 1024).toFixed(0)} MB/s`;
		const eta = event.etaSeconds === undefined || event.done >= event.total ? '' : ` ETA ${Math.ceil(event.etaSeconds)}s`;
		const label = event.label === undefined ? '' : ` ${event.label}`;
		const width = Math.max(20, (process.stderr.columns ?? 80) - 1);
		const text = sanitizeLine(`${prefix} ${percent}% (${event.done}/${event.total})${rate}${eta}${label}`, width);
		process.stderr.write(`\r\u001B[2K${text}`);
		this.shown = true;
	}

	clear(): void {
		if (this.shown) {
			process.stderr.write('\r\u001B[2K');
			this.shown = false;
		}
	}
}

function megabytes(bytes: number): string {
	return `${(bytes / 1024 / 1024).toFixed(bytes < 10 * 1024 * 1024 ? 2 : 1)} MB`;
}

function summaryLine(result: ResizeWriteResult): string {
	const ranks = result.modules.filter(m => m.rankAfter > 0).map(m => m.rankAfter);
	const before = result.modules.filter(m => m.rankBefore !== null).map(m => m.rankBefore!);
	const span = (values: number[]) => (values.length === 0 ? '0' : Math.min(...values) === Math.max(...values) ? String(values[0]) : `${Math.min(...values)}-${Math.max(...values)}`);
	const parts = [
		`wrote ${sanitizeLine(result.outPath, 200)}`,
		`  ${result.method}: rank ${span(before)} -> ${span(ranks)}, ${(result.totals.froRetained * 100).toFixed(2)}% Frobenius energy kept`,
		`  ${megabytes(result.sizes.sourceBytes)} -> ${megabytes(result.sizes.outputBytes)} (${result.sizes.compression.toFixed(2)}x), ${result.totals.resized} resized, ${result.totals.removed} removed, ${result.totals.copied} copied, ${result.seconds.toFixed(2)} s on ${result.device}`,
	];
	if (result.threshold !== null) {
		parts.push(`  threshold ${Number.isFinite(result.threshold) ? result.threshold.toFixed(3) : String(result.threshold)}`);
	}

	for (const note of result.notes) {
		parts.push(`  note: ${sanitizeLine(note, 200)}`);
	}

	return parts.join('\n');
}

type FileReport = {
	source: string;
	device: string;
	outputs: Array<ResizeWriteResult | {method: string; error: string}>;
	base?: {path: string; need: BaseNormsNeed; subspace?: boolean; cached: boolean; seconds: number; unmapped: string[]};
	error?: string;
};

export async function run(argv: string[]): Promise<number> {
	let options: Options | 'help';
	try {
		options = parseResizeArgs(argv);
	} catch (error) {
		if (error instanceof UsageError || error instanceof ResizeMethodError || (error as {code?: string}).code?.startsWith('ERR_PARSE_ARGS')) {
			process.stderr.write(`lorascope resize: ${errorReason(error)}\n\n${usage}`);
			return 2;
		}

		throw error;
	}

	if (options === 'help') {
		process.stdout.write(usage);
		return 0;
	}

	if (options.outDir !== undefined) {
		try {
			await mkdir(options.outDir, {recursive: true});
		} catch (error) {
			process.stderr.write(`lorascope resize: ${sanitizeLine(options.outDir, 200)}: ${sanitizeLine(errorReason(error), 400)}\n`);
			return 1;
		}
	}

	const client = EngineClient.start({device: options.device});
	const progress = new ProgressLine(Boolean(process.stderr.isTTY) && !options.json);
	let current: string | undefined;
	let cancelled = false;
	const onSigint = () => {
		if (cancelled) {
			// Second Ctrl+C: stop waiting for the engine.
			process.exit(130);
		}

		cancelled = true;
		if (current !== undefined) {
			client.cancel(current);
		}
	};

	process.on('SIGINT', onSigint);
	const reports: FileReport[] = [];
	let failures = 0;
	try {
		let deviceName: string;
		try {
			deviceName = (await client.device()).device;
		} catch (error) {
			process.stderr.write(`lorascope resize: ${sanitizeLine(errorReason(error), 400)}\n`);
			return 1;
		}

		const runJob = async <T>(prefix: string, start: (onProgress: (event: ProgressEvent) => void) => {jobId: string; promise: Promise<T>}): Promise<T> => {
			const job = start(event => {
				progress.update(prefix, event);
			});
			current = job.jobId;
			try {
				return await job.promise;
			} finally {
				current = undefined;
				progress.clear();
			}
		};

		for (const file of options.files) {
			if (cancelled) {
				break;
			}

			const name = sanitizeLine(path.basename(file), 60);
			const report: FileReport = {source: file, device: deviceName, outputs: []};
			reports.push(report);
			let baseNorms: Record<string, BaseNorm> | undefined;
			try {
				if (options.base !== undefined) {
					const need = baseNormsNeed(options.methods);
					const subspace = needsSubspace(options.methods);
					const base: BaseNormsResult = await runJob(`${name}: base norms`, onProgress => client.run('base-norms', {basePath: options.base!, loraPath: file, need, ...(subspace ? {subspace} : {})}, {onProgress}));
					baseNorms = base.norms;
					report.base = {path: options.base, need, ...(subspace ? {subspace} : {}), cached: base.cached, seconds: base.seconds, unmapped: base.unmapped};
					if (!options.json && base.unmapped.length > 0) {
						process.stderr.write(`${name}: ${base.unmapped.length} modules have no weight in the base checkpoint (kept at full rank), e.g. ${sanitizeLine(base.unmapped[0]!, 100)}\n`);
					}
				}
			} catch (error) {
				if (error instanceof CancelledError || cancelled) {
					break;
				}

				failures++;
				report.error = errorReason(error);
				if (!options.json) {
					process.stderr.write(`lorascope resize: ${sanitizeLine(file, 200)}: ${sanitizeLine(report.error, 400)}\n`);
				}

				continue;
			}

			for (const method of options.methods) {
				if (cancelled) {
					break;
				}

				try {
					const result: ResizeWriteResult = await runJob(`${name}: ${describeMethod(method)}`, onProgress => client.run('resize-write', {
						path: file,
						method,
						...(baseNorms ? {baseNorms, basePath: options.base!} : {}),
						...(options.outDir === undefined ? {} : {outDir: options.outDir}),
						...(options.dtype === undefined ? {} : {dtype: options.dtype}),
						overwrite: options.overwrite,
					}, {onProgress}));
					report.outputs.push(result);
					if (!options.json) {
						process.stdout.write(`${summaryLine(result)}\n`);
					}
				} catch (error) {
					if (error instanceof CancelledError || cancelled) {
						break;
					}

					failures++;
					const reason = errorReason(error);
					report.outputs.push({method: describeMethod(method), error: reason});
					if (!options.json) {
						process.stderr.write(`lorascope resize: ${sanitizeLine(file, 200)} (${describeMethod(method)}): ${sanitizeLine(reason, 400)}\n`);
					}
				}
			}
		}
	} finally {
		process.off('SIGINT', onSigint);
		progress.clear();
		// Graceful: the engine finishes cancelling (its writer removes its temp file) before it exits.
		await client.close();
		if (cancelled || failures > 0) {
			// A worker killed mid-write (Ctrl+C reaches the whole process group) leaves its temp file.
			const folders = new Set(options.outDir === undefined ? options.files.map(f => path.dirname(path.resolve(f))) : [path.resolve(options.outDir)]);
			await Promise.all([...folders].map(async folder => cleanStaleTempFiles(folder, 0)));
		}
	}

	if (options.json) {
		process.stdout.write(`${jsonForTerminal(reports, 2)}\n`);
	}

	if (cancelled) {
		process.stderr.write('lorascope resize: cancelled\n');
		return 130;
	}

	return failures > 0 ? 1 : 0;
}
