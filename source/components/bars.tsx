// The one-line bars around the body: title (folder, counts, sort, filter), status (messages, the text
// input, job progress) and the help bar (the focused view's keys, from the keymap). Each is a line of
// segments cut to the terminal width by LineRow (which also makes it ASCII in a non-UTF-8 locale).
import type {HelpItem} from '../keymap.js';
import {glyphs, progressBar} from '../state/glyphs.js';
import {seg, type Role, type Segment} from '../state/lines.js';
import {clean, displayWidth, truncate} from '../state/text.js';
import type {InputState, StatusMessage, TerminalEnv} from '../state/types.js';
import {LineRow} from './line-view.js';

/** Key labels use arrows and ↵; ASCII terminals get words. */
export function asciiKey(label: string, env: TerminalEnv): string {
	if (env.unicode) {
		return label;
	}

	return label.replaceAll('↓', 'dn').replaceAll('↑', 'up').replaceAll('←', 'left').replaceAll('→', 'right').replaceAll('↵', 'enter').replaceAll('⌫', 'bksp');
}

export type TitlePart = {text: string; role?: Role};

export function TitleBar({parts, width, env}: {parts: TitlePart[]; width: number; env: TerminalEnv}) {
	return <LineRow line={{segments: parts.map(part => seg(part.text, part.role))}} env={env} width={width} highlighted={false} />;
}

export type JobLine = {label: string; done: number; total: number};

export function statusSegments({status, input, inputHint, job, fallback, width, env}: {status: StatusMessage | null; input: InputState | null; inputHint: string; job?: JobLine; fallback: string; width: number; env: TerminalEnv}): Segment[] {
	if (input) {
		const prompt = input.target === 'filter' ? '/' : input.target === 'tags-search' ? 'search tags: ' : 'search metadata: ';
		const text = clean(input.text, env, Math.max(10, width - prompt.length - 4));
		return [seg(prompt, 'accent'), seg(text), seg(env.unicode ? '▏' : '_'), seg(`  ${inputHint}`, 'dim')];
	}

	if (status) {
		const role = status.level === 'error' ? 'error' : status.level === 'warn' ? 'warn' : 'ok';
		return [seg(clean(status.text, env, 400), role)];
	}

	if (job) {
		const barWidth = Math.min(30, Math.max(8, Math.floor(width / 4)));
		const counts = job.total > 0 ? ` ${job.done}/${job.total}` : '';
		return [seg(`${truncate(job.label, Math.max(10, width - barWidth - counts.length - 2), env)} `), seg(progressBar(job.done, job.total, barWidth, env), 'accent'), seg(counts, 'dim')];
	}

	return [seg(fallback, 'dim')];
}

export function StatusLine(props: {status: StatusMessage | null; input: InputState | null; inputHint: string; job?: JobLine; fallback: string; width: number; env: TerminalEnv}) {
	return <LineRow line={{segments: statusSegments(props)}} env={props.env} width={props.width} highlighted={false} />;
}

/** Keys cut to width the way lazygit's options bar is: whole items, then an ellipsis. */
export function HelpBar({items, width, env}: {items: readonly HelpItem[]; width: number; env: TerminalEnv}) {
	const g = glyphs(env);
	const segments: Segment[] = [];
	let used = 0;
	for (const item of items) {
		const key = asciiKey(item.key, env);
		const w = displayWidth(key) + 1 + displayWidth(item.label) + 2;
		if (used + w > width - g.ellipsis.length) {
			segments.push(seg(g.ellipsis, 'dim'));
			break;
		}

		segments.push(seg(key, 'accent'), seg(` ${item.label}  `));
		used += w;
	}

	return <LineRow line={{segments}} env={env} width={width} highlighted={false} />;
}
