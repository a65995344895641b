// Tags tab: the tag-frequency histogram of ss_tag_frequency as bars, merged across dataset dirs or
// per dir, searchable; trigger-word candidates marked; tags can be picked (space) and copied (y).
import type {TrainingInfo} from '../lora/metadata.js';
import {bar, glyphs} from './glyphs.js';
import {blank, line, seg, type Line} from './lines.js';
import {clean, fit} from './text.js';
import type {TerminalEnv} from './types.js';

export type TagsOptions = {
	mode: 'merged' | 'per-dir';
	query: string;
	picked: readonly string[];
	width: number;
	env: TerminalEnv;
};

export const tagKeyPrefix = 'tag:';

export function tagOfKey(key: string | undefined): string | undefined {
	return key?.startsWith(tagKeyPrefix) ? key.slice(tagKeyPrefix.length) : undefined;
}

type TagRow = {tag: string; count: number};

function tagLine(row: TagRow, max: number, isTrigger: boolean, picked: boolean, widths: {tag: number; bar: number; count: number}, env: TerminalEnv): Line {
	const g = glyphs(env);
	const star = env.unicode ? '★' : '*';
	return line(
		[
			seg(picked ? `${g.mark} ` : '  ', 'picked'),
			seg(isTrigger ? `${star} ` : '  ', 'accent'),
			seg(fit(clean(row.tag, env, 200), widths.tag, env), isTrigger ? 'accent' : 'text'),
			seg(' '),
			seg(fit(bar(max > 0 ? row.count / max : 0, widths.bar, env), widths.bar, env), 'bar'),
			seg(fit(String(row.count), widths.count, env, 'right'), 'value'),
		],
		tagKeyPrefix + row.tag,
	);
}

export function tagsLines(training: TrainingInfo | undefined, options: TagsOptions): Line[] {
	const {env, width, query, mode} = options;
	if (!training || training.tags.length === 0) {
		return [line([seg('No tag frequencies in the metadata (ss_tag_frequency is missing or empty).', 'dim')])];
	}

	const q = query.trim().toLowerCase();
	const triggers = new Set(training.derived.triggerCandidates);
	const picked = new Set(options.picked);
	const dirs = new Set(training.tags.map(t => t.dir));
	const lines: Line[] = [];
	const star = env.unicode ? '★' : '*';
	lines.push(
		line([
			seg(`${training.mergedTags.length} tags in ${dirs.size} dir${dirs.size === 1 ? '' : 's'}, ${mode === 'merged' ? 'merged' : 'per dir'}`, 'heading'),
			seg(`  m ${mode === 'merged' ? 'per dir' : 'merged'} · / search · space pick · y copy`, 'dim'),
		]),
	);
	const phrase = training.modelspec.triggerPhrase;
	lines.push(
		line([
			seg(`${star} trigger-word candidates (in at least half the captions): `, 'dim'),
			seg(triggers.size > 0 ? clean([...triggers].join(', '), env, 300) : 'none', 'accent'),
		]),
	);
	if (phrase) {
		lines.push(line([seg('declared trigger phrase: ', 'dim'), seg(clean(phrase, env, 300), 'accent')]));
	}

	// Always one line, so picking a tag never shifts the cursor's line.
	lines.push(picked.size > 0 ? line([seg(`${picked.size} picked for copy (y copies, x clears)`, 'picked')]) : line([seg('none picked: space picks the tag under the cursor, y copies', 'dim')]));

	if (q !== '') {
		lines.push(line([seg(`search "${clean(q, env, 40)}"`, 'match')]));
	}

	lines.push(blank);
	const matches = (tag: string): boolean => q === '' || tag.toLowerCase().includes(q);
	const countWidth = 7;
	const tagWidth = Math.min(36, Math.max(12, Math.floor(width * 0.4)));
	const widths = {tag: tagWidth, count: countWidth, bar: Math.max(4, width - tagWidth - countWidth - 6)};
	if (mode === 'merged') {
		const rows = training.mergedTags.filter(t => matches(t.tag));
		const max = Math.max(0, ...training.mergedTags.map(t => t.count));
		for (const row of rows) {
			lines.push(tagLine(row, max, triggers.has(row.tag), picked.has(row.tag), widths, env));
		}

		if (rows.length === 0) {
			lines.push(line([seg('no tag matches the search', 'dim')]));
		}

		return lines;
	}

	const byDir = new Map<string, TagRow[]>();
	for (const t of training.tags) {
		const list = byDir.get(t.dir) ?? [];
		list.push(t);
		byDir.set(t.dir, list);
	}

	for (const [dir, rows] of byDir) {
		const shown = rows.filter(t => matches(t.tag)).sort((a, b) => b.count - a.count);
		const max = Math.max(0, ...rows.map(t => t.count));
		lines.push(line([seg(clean(dir, env, Math.max(10, width - 20)), 'heading'), seg(`  ${rows.length} tags`, 'dim')]));
		for (const row of shown) {
			lines.push(tagLine(row, max, triggers.has(row.tag), picked.has(row.tag), widths, env));
		}

		lines.push(blank);
	}

	return lines;
}
