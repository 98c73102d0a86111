//! Judging stored answers: the cache of judge calls, one stored judgment per answer × metric,
//! resumable.
//!
//! Every call is cached in the results database (`judge_calls`) under the sha256 of what
//! decides its output — the judge's identity ([`judge_id`]: model sha256 and the settings that
//! change outputs), the step, [`PROMPT_VERSION`], the system and user messages and the grammar —
//! so judging the same inputs again (another cell with the same context, a rerun, a re-report)
//! asks nothing. Each judgment (`judgments`) is written in its own transaction together with the
//! answer's metric, so an interrupted `orchestrate judge` resumes where it stopped, and a judgment
//! that could not be made is stored as an error and counted, never dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::grammar::Parsed;
use super::steps::{Call, PROMPT_VERSION, SYSTEM};
use super::{
    metric_name, score, Ask, JudgeError, JudgeInput, JudgeMetric, MetricOptions, Profile, Score,
};
use crate::generate::{GenerateError, Generation, Generator, StopReason};
use crate::store::{
    AnswerRecord, AnswerStatus, JudgeCallRecord, JudgedTexts, JudgmentRecord, JudgmentStatus,
    Store, StoreError,
};
use crate::worker::TextEmbedder;

/// The judge settings of an experiment (`[judge]`), resolved.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JudgeSettings {
    /// The judge model (a GGUF with a chat template).
    pub gguf: PathBuf,
    /// llama.cpp threads.
    pub threads: i32,
    /// Context window of the judge in tokens (prompt + output).
    pub n_ctx: u32,
    /// Most tokens one judge call may generate; a call cut there is a stored error.
    pub max_tokens: u32,
    /// Whose definitions to compute (stored names get a `_<profile>` suffix when several).
    pub profiles: Vec<Profile>,
    /// Which metrics.
    pub metrics: Vec<JudgeMetric>,
    /// Metric options.
    pub options: MetricOptions,
    /// Whether `orchestrate run` judges the answers after the sweep (`judge = true`).
    pub after_run: bool,
}

/// Default judge model, relative to an experiment file in `experiments/`: the largest model the
/// manifest ships (`orchestrate models fetch qwen2.5-coder-1.5b-instruct`).
pub const DEFAULT_JUDGE_GGUF: &str = "../models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf";

impl JudgeSettings {
    /// The defaults: [`DEFAULT_JUDGE_GGUF`] resolved against `base` (the experiment file's
    /// directory), all cores, n_ctx 4096, max_tokens 1024, the RAGAS profile, every metric.
    pub fn defaults(base: &Path) -> JudgeSettings {
        JudgeSettings {
            gguf: base.join(DEFAULT_JUDGE_GGUF),
            threads: crate::generate::default_threads(),
            n_ctx: 4096,
            max_tokens: 1024,
            profiles: vec![Profile::Ragas],
            metrics: JudgeMetric::ALL.to_vec(),
            options: MetricOptions::default(),
            after_run: false,
        }
    }

    /// The stored metric names, in display order: (metric, profile, name).
    pub fn metric_names(&self) -> Vec<(JudgeMetric, Profile, String)> {
        let several = self.profiles.len() > 1;
        let mut out = Vec::new();
        for m in JudgeMetric::ALL {
            if !self.metrics.contains(&m) {
                continue;
            }
            for &p in &self.profiles {
                out.push((m, p, metric_name(m, p, several)));
            }
        }
        out
    }
}

/// The judge model: the seam between judging and llama.cpp ([`Generator`] in production).
pub trait JudgeModel {
    /// Greedy chat completion of `system` + `user` under the GBNF `grammar`.
    ///
    /// # Errors
    /// [`GenerateError`] from the model.
    fn complete(
        &mut self,
        system: &str,
        user: &str,
        grammar: &str,
    ) -> Result<Generation, GenerateError>;
    /// The token budget of one call.
    fn max_tokens(&self) -> u32;
}

impl JudgeModel for Generator {
    fn complete(
        &mut self,
        system: &str,
        user: &str,
        grammar: &str,
    ) -> Result<Generation, GenerateError> {
        self.chat_constrained(system, user, grammar)
    }
    fn max_tokens(&self) -> u32 {
        self.params().max_tokens
    }
}

/// The judge's identity in cache keys and judgments: the model's sha256, max_tokens (a smaller
/// budget can cut an output that a larger one completes) and the greedy, grammar-constrained
/// decoding this module always uses. n_ctx and threads do not change outputs.
pub fn judge_id(gguf_sha256: &str, max_tokens: u32) -> String {
    format!(
        "{}:greedy:max_tokens={max_tokens}",
        &gguf_sha256[..gguf_sha256.len().min(16)]
    )
}

/// The cache key of `call` for judge `judge`: hex sha256 over the judge, the step, the prompt
/// version, the system and user messages and the grammar.
pub fn call_key(judge: &str, call: &Call, grammar: &str) -> String {
    let mut h = Sha256::new();
    for part in [
        judge,
        call.step.name(),
        &PROMPT_VERSION.to_string(),
        SYSTEM,
        &call.user,
        grammar,
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    format!("{:x}", h.finalize())
}

/// What judging asked of the model.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CallStats {
    /// Calls decoded by the judge model.
    pub calls: u64,
    /// Calls answered from the cache.
    pub cached: u64,
    /// Prompt tokens decoded.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
    /// Seconds spent in the model.
    pub model_s: f64,
}

/// [`Ask`] through the cache in `store`, then the model.
pub struct CachedAsk<'a> {
    store: &'a Store,
    model: &'a mut dyn JudgeModel,
    judge: &'a str,
    /// What was asked so far.
    pub stats: CallStats,
}

impl<'a> CachedAsk<'a> {
    /// Asks `model` as judge `judge` (see [`judge_id`]), caching in `store`.
    pub fn new(store: &'a Store, model: &'a mut dyn JudgeModel, judge: &'a str) -> Self {
        CachedAsk {
            store,
            model,
            judge,
            stats: CallStats::default(),
        }
    }
}

impl Ask for CachedAsk<'_> {
    fn ask(&mut self, call: &Call) -> Result<Parsed, JudgeError> {
        let step = call.step.name();
        let grammar = call.shape.grammar();
        let key = call_key(self.judge, call, &grammar);
        let cache = |e: StoreError| JudgeError::Cache(e.to_string());
        if let Some(output) = self.store.judge_call(&key).map_err(cache)? {
            self.stats.cached += 1;
            return call
                .shape
                .parse(&output)
                .map_err(|source| JudgeError::Shape { step, source });
        }
        let started = Instant::now();
        let g = self
            .model
            .complete(SYSTEM, &call.user, &grammar)
            .map_err(|source| model_error(step, source))?;
        let seconds = started.elapsed().as_secs_f64();
        self.stats.calls += 1;
        self.stats.prompt_tokens += u64::from(g.prompt_tokens);
        self.stats.completion_tokens += u64::from(g.completion_tokens);
        self.stats.model_s += seconds;
        if g.stopped_by == StopReason::MaxTokens {
            return Err(JudgeError::Truncated {
                step,
                max_tokens: self.model.max_tokens(),
            });
        }
        let parsed = call
            .shape
            .parse(&g.text)
            .map_err(|source| JudgeError::Shape { step, source })?;
        self.store
            .put_judge_call(&JudgeCallRecord {
                key: &key,
                step,
                judge: self.judge,
                prompt_version: PROMPT_VERSION,
                output: &g.text,
                prompt_tokens: g.prompt_tokens,
                completion_tokens: g.completion_tokens,
                seconds,
            })
            .map_err(cache)?;
        Ok(parsed)
    }
}

/// The judge error for a model failure at `step`: a prompt too long for n_ctx is named as the
/// judge's prompt, with the [judge] settings that fix it.
fn model_error(step: &'static str, source: GenerateError) -> JudgeError {
    match source {
        GenerateError::QuestionTooLong {
            prompt_tokens,
            max_tokens,
            n_ctx,
        } => JudgeError::PromptTooLong {
            step,
            prompt_tokens,
            max_tokens,
            n_ctx,
        },
        source => JudgeError::Generate { step, source },
    }
}

/// The retrieved chunks' texts by (index directory, chunk id).
pub type ChunkTexts = BTreeMap<(String, u32), String>;

/// What one `judge` pass did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct JudgeSummary {
    /// Answers × metrics to judge (ok answers only).
    pub total: u64,
    /// Already judged by this judge and prompt version (skipped).
    pub already: u64,
    /// Judged now with a value.
    pub ok: u64,
    /// Judged now as undefined (the reference's NaN).
    pub undefined: u64,
    /// Could not be judged now (stored as errors; see `judgments.detail`).
    pub errors: u64,
    /// Judgments not yet stored that the scope's `questions` limit left for a later pass.
    pub deferred: u64,
    /// Judgments made but not stored because their answer changed or was removed meanwhile (a
    /// concurrent `orchestrate run`); the next pass judges the answer as it is now.
    pub changed: u64,
    /// What was asked of the model.
    pub calls: CallStats,
    /// Memory and CPU of the judging process while it judged (sampled as a sweep's workers
    /// are); `None` when nothing was judged.
    pub usage: Option<crate::sample::Usage>,
}

impl JudgeSummary {
    /// Judgments handled so far in this pass, stored before or now (of [`JudgeSummary::total`]).
    pub fn done(&self) -> u64 {
        self.already + self.ok + self.undefined + self.errors + self.changed
    }
}

/// One `judge` pass over stored answers: what to judge, with which judge, and where to store it.
pub struct JudgeJob<'a> {
    /// The results database (judgments, the call cache, the answers' metrics).
    pub store: &'a Store,
    /// The answers; only `ok` ones are judged.
    pub answers: &'a [AnswerRecord],
    /// The texts of the chunks the answers were given.
    pub chunks: &'a ChunkTexts,
    /// Metrics, profiles and options.
    pub settings: &'a JudgeSettings,
    /// The judge's identity ([`judge_id`]).
    pub judge: &'a str,
    /// Which answers this pass judges.
    pub scope: JudgeScope,
}

/// Which of the stored answers a `judge` pass judges, and in what order.
///
/// A pass goes question by question, in a fixed pseudo-random order of the question ids (by
/// their sha256), judging every cell's answer to a question before the next question. So a pass stopped part-way, or limited with
/// `questions`, leaves every cell judged on the same questions: per-cell judge metrics stay
/// comparable (paired over the same questions) at any point, instead of some cells being fully
/// judged and others not at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JudgeScope {
    /// Judge again the judgments that failed in an earlier pass.
    pub retry_errors: bool,
    /// Judge only the answers to the first `n` questions of the order (`--questions n`); a
    /// later pass without it judges the rest. `None`: all.
    pub questions: Option<usize>,
}

/// One judgment a pass considers.
struct Item<'a> {
    answer: &'a AnswerRecord,
    metric: JudgeMetric,
    profile: Profile,
    key: crate::store::JudgmentKey,
    /// Already stored by this judge and prompt version.
    stored: bool,
}

impl JudgeJob<'_> {
    /// Every (answer, metric, profile, stored name) to judge — of retrieval-only rows only the
    /// context metrics, which need no answer — in the [`JudgeScope`]'s question order, with
    /// whether it is already stored by this judge and prompt version (an earlier error counts as
    /// stored unless `retry_errors`); and how many judgments not yet stored the scope's
    /// `questions` limit leaves out.
    fn items(&self) -> Result<(Vec<Item<'_>>, u64), StoreError> {
        let done = self.store.judgments_by(self.judge, PROMPT_VERSION)?;
        let names = self.settings.metric_names();
        let ok: Vec<&AnswerRecord> = self
            .answers
            .iter()
            .filter(|a| a.status == AnswerStatus::Ok)
            .collect();
        let rank = question_ranks(&ok);
        let mut ordered: Vec<(usize, &AnswerRecord)> =
            ok.iter().map(|a| (rank[&a.question_id], *a)).collect();
        // stable: within a question, cells keep their stored order
        ordered.sort_by_key(|(r, _)| *r);
        let limit = self.scope.questions.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        let mut deferred = 0;
        for (r, a) in ordered {
            for (metric, profile, name) in &names {
                if !applies(*metric, a) {
                    continue;
                }
                let key = (
                    a.cell.cell_id.clone(),
                    a.repeat,
                    a.question_id.clone(),
                    name.clone(),
                );
                let stored = match done.get(&key) {
                    Some(JudgmentStatus::Ok | JudgmentStatus::Undefined) => true,
                    Some(JudgmentStatus::Error) => !self.scope.retry_errors,
                    None => false,
                };
                if r >= limit {
                    deferred += u64::from(!stored);
                    continue;
                }
                out.push(Item {
                    answer: a,
                    metric: *metric,
                    profile: *profile,
                    key,
                    stored,
                });
            }
        }
        Ok((out, deferred))
    }

    /// How many judgments [`JudgeJob::run`] would make (0: the judge model is not needed).
    ///
    /// # Errors
    /// Store errors.
    pub fn pending(&self) -> Result<u64, StoreError> {
        Ok(self.items()?.0.iter().filter(|i| !i.stored).count() as u64)
    }

    /// Judges every ok answer in the scope on the settings' metrics and profiles with `model`,
    /// question by question ([`JudgeScope`]), skipping judgments already stored (see
    /// [`JudgeJob::pending`]). An answer whose chunks are missing
    /// gets [`JudgeError::NoContexts`] for the metrics that need them. `progress` gets the
    /// running summary after each judgment ([`JudgeSummary::done`] of [`JudgeSummary::total`]).
    ///
    /// # Errors
    /// [`StoreError`] when a judgment cannot be written (judge failures are stored, not
    /// returned).
    pub fn run(
        &self,
        model: &mut dyn JudgeModel,
        embedder: &dyn TextEmbedder,
        progress: &mut dyn FnMut(&JudgeSummary),
    ) -> Result<JudgeSummary, StoreError> {
        let (items, deferred) = self.items()?;
        let mut summary = JudgeSummary {
            total: items.len() as u64,
            deferred,
            ..JudgeSummary::default()
        };
        let mut ask = CachedAsk::new(self.store, model, self.judge);
        for item in items {
            let Item {
                answer: a,
                metric,
                profile,
                key,
                stored,
            } = item;
            if stored {
                summary.already += 1;
                progress(&summary);
                continue;
            }
            let contexts = contexts_of(a, self.chunks);
            let name = key.3.clone();
            let outcome = match &contexts {
                Err(missing)
                    if metric != JudgeMetric::Correctness
                        && metric != JudgeMetric::AnswerRelevancy =>
                {
                    Err(JudgeError::NoContexts(missing.clone()))
                }
                _ => {
                    let input = JudgeInput {
                        question: &a.question,
                        answer: &a.answer,
                        expected: &a.expected_answer,
                        contexts: contexts
                            .as_ref()
                            .map(|c| c.iter().map(String::as_str).collect())
                            .unwrap_or_default(),
                    };
                    score(
                        metric,
                        profile,
                        &input,
                        self.settings.options,
                        &mut ask,
                        embedder,
                    )
                }
            };
            let (status, value, detail) = match outcome {
                Ok(Score::Value(v)) => (JudgmentStatus::Ok, Some(v), None),
                Ok(Score::Undefined(why)) => {
                    (JudgmentStatus::Undefined, None, Some(why.to_string()))
                }
                Err(e) => (JudgmentStatus::Error, None, Some(e.to_string())),
            };
            let stored = self.store.put_judgment(
                &JudgmentRecord {
                    cell_id: key.0,
                    repeat: key.1,
                    question_id: key.2,
                    metric: key.3,
                    status,
                    value,
                    detail: detail.clone(),
                    judge: self.judge.to_string(),
                    prompt_version: PROMPT_VERSION,
                },
                &JudgedTexts {
                    question: &a.question,
                    expected_answer: &a.expected_answer,
                    answer: &a.answer,
                },
            )?;
            match status {
                _ if !stored => {
                    summary.changed += 1;
                    tracing::warn!(cell = %a.cell.cell_id, question = %a.question_id, metric = %name, "answer changed or removed while it was judged (a concurrent `orchestrate run`?): judgment not stored");
                }
                JudgmentStatus::Ok => summary.ok += 1,
                JudgmentStatus::Undefined => summary.undefined += 1,
                JudgmentStatus::Error => {
                    summary.errors += 1;
                    tracing::warn!(cell = %a.cell.cell_id, question = %a.question_id, metric = %name, "judge error: {}", detail.as_deref().unwrap_or_default());
                }
            }
            progress(&summary);
        }
        summary.calls = ask.stats;
        Ok(summary)
    }
}

/// Each question id of `answers` with its place in the judge's order: ids sorted by the
/// sha256 of the id (then by id), a fixed pseudo-random order that depends on nothing but the
/// ids, so every pass, database copy and `--questions n` sees the same order, and a question
/// added later takes its place without reordering the others.
fn question_ranks(answers: &[&AnswerRecord]) -> BTreeMap<String, usize> {
    let ids: std::collections::BTreeSet<&str> =
        answers.iter().map(|a| a.question_id.as_str()).collect();
    let mut keyed: Vec<([u8; 32], &str)> = ids
        .into_iter()
        .map(|id| (Sha256::digest(id.as_bytes()).into(), id))
        .collect();
    keyed.sort();
    keyed
        .into_iter()
        .enumerate()
        .map(|(r, (_, id))| (id.to_string(), r))
        .collect()
}

/// Whether the judge judges `answer` on `metric`: every metric of a generated answer, only the
/// context metrics (which need no answer) of a retrieval-only row.
pub fn applies(metric: JudgeMetric, answer: &AnswerRecord) -> bool {
    answer.cell.model != crate::cell::RETRIEVAL_ONLY || metric.is_context_only()
}

/// A few lines describing a judge pass for the terminal: judgments made, skipped, undefined and
/// failed, and what was asked of the model (calls, cache hits, tokens, seconds).
pub fn summary_text(name: &str, s: &JudgeSummary) -> String {
    let mut t = format!(
        "judged `{name}`: {} judgments ({} new: {} with a value, {} undefined, {} failed; {} already stored)\n",
        s.total,
        s.ok + s.undefined + s.errors,
        s.ok,
        s.undefined,
        s.errors,
        s.already
    );
    t.push_str(&format!(
        "judge model: {} calls ({} prompt + {} generated tokens, {:.1} s), {} answered from the cache\n",
        s.calls.calls, s.calls.prompt_tokens, s.calls.completion_tokens, s.calls.model_s, s.calls.cached
    ));
    if let Some(u) = &s.usage {
        t.push_str(&format!(
            "judge process: peak RSS {:.0} MiB, mean RSS {:.0} MiB, mean CPU {:.0}% of a core ({} samples)\n",
            u.rss_peak_bytes as f64 / 1048576.0,
            u.rss_mean_bytes as f64 / 1048576.0,
            u.cpu_mean_percent,
            u.n_samples
        ));
    }
    if s.errors > 0 {
        t.push_str("failed judgments are stored with their error (table `judgments`); rerun with --retry-errors after fixing the cause\n");
    }
    if s.changed > 0 {
        t.push_str(&format!(
            "{} judgments were not stored: their answer or expected answer changed while they were judged (a concurrent `orchestrate run`); `orchestrate judge` again judges them as they are now\n",
            s.changed
        ));
    }
    if s.deferred > 0 {
        t.push_str(&format!(
            "{} judgments of the answers to the other questions are left for a pass without --questions\n",
            s.deferred
        ));
    }
    t
}

/// One human label: is this answer to this question correct.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Label {
    /// The question id in the QA file.
    pub question_id: String,
    /// The answer text exactly as stored.
    pub answer: String,
    /// The human verdict.
    pub correct: bool,
}

/// A labels file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    /// The file cannot be read.
    #[error("cannot read labels file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not a label.
    #[error("{}:{line}: not a label ({source}); each line needs {{\"question_id\", \"answer\", \"correct\": true|false}}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Why.
        source: serde_json::Error,
    },
}

/// Reads a JSON-lines labels file (blank lines skipped).
///
/// # Errors
/// [`LabelsError`] naming the file and line.
pub fn load_labels(path: &Path) -> Result<Vec<Label>, LabelsError> {
    let text = std::fs::read_to_string(path).map_err(|source| LabelsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| LabelsError::Line {
                path: path.to_path_buf(),
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// Agreement of each judge's correctness verdicts (any `correctness` metric name) with `labels`,
/// over the distinct (question, answer text) pairs both rated; a value ≥ 0.5 is the judge's
/// "correct". Judges or metrics with no labelled answer are left out.
pub fn agreement_with_labels(
    judged: &[crate::store::JudgedAnswer],
    labels: &[Label],
) -> Vec<(String, String, crate::stats::agreement::Agreement)> {
    use crate::score::metric::Metric;
    let by_answer: BTreeMap<(&str, &str), bool> = labels
        .iter()
        .map(|l| ((l.question_id.as_str(), l.answer.as_str()), l.correct))
        .collect();
    /// (question id, answer text) → (judge says correct, label says correct).
    type Rated<'a> = BTreeMap<(&'a str, &'a str), (bool, bool)>;
    let mut pairs: BTreeMap<(&str, &str), Rated> = BTreeMap::new();
    for j in judged {
        if !matches!(
            Metric::parse(&j.metric),
            Metric::Judge(JudgeMetric::Correctness, _)
        ) {
            continue;
        }
        if let Some(&human) = by_answer.get(&(j.question_id.as_str(), j.answer.as_str())) {
            pairs
                .entry((j.judge.as_str(), j.metric.as_str()))
                .or_default()
                .insert(
                    (j.question_id.as_str(), j.answer.as_str()),
                    (j.value >= 0.5, human),
                );
        }
    }
    pairs
        .into_iter()
        .map(|((judge, metric), items)| {
            let (j, h): (Vec<bool>, Vec<bool>) = items.into_values().unzip();
            (
                judge.to_string(),
                metric.to_string(),
                crate::stats::agreement::Agreement::of(&j, &h),
            )
        })
        .collect()
}

/// One line per judge agreement: accuracy, Cohen's kappa and the confusion counts.
pub fn agreement_text(rows: &[crate::store::JudgeAgreementRecord]) -> String {
    let mut t = String::new();
    for r in rows {
        let g = &r.agreement;
        t.push_str(&format!(
            "{} by judge {} vs {} ({} labelled answers): accuracy {}, Cohen's kappa {} (both correct {}, both incorrect {}, only the judge says correct {}, only the labels {})\n",
            r.metric,
            r.judge,
            r.labels,
            g.n,
            g.accuracy().map_or("n/a".into(), |a| format!("{a:.3}")),
            g.kappa().map_or("n/a".into(), |k| format!("{k:.3}")),
            g.both_yes,
            g.both_no,
            g.only_first,
            g.only_second
        ));
    }
    t
}

/// The texts of the chunks answer `a` was given (the first `contexts_used` of its retrieved
/// ids), or why they are not available.
fn contexts_of(a: &AnswerRecord, chunks: &ChunkTexts) -> Result<Vec<String>, String> {
    let used = a
        .contexts_used
        .map_or(a.chunk_ids.len(), |u| (u as usize).min(a.chunk_ids.len()));
    let Some(dir) = a.index_dir.as_deref() else {
        return if used == 0 {
            Ok(Vec::new())
        } else {
            Err("the cell recorded no index directory".into())
        };
    };
    a.chunk_ids[..used]
        .iter()
        .map(|id| {
            chunks
                .get(&(dir.to_string(), *id))
                .cloned()
                .ok_or_else(|| format!("chunk {id} of {dir}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::EmbedError;

    /// A judge that says yes to everything: one statement per extraction, verdict 1 / "yes".
    struct Agreeable {
        calls: u64,
        fail_on: Option<&'static str>,
    }

    impl JudgeModel for Agreeable {
        fn complete(
            &mut self,
            _system: &str,
            user: &str,
            grammar: &str,
        ) -> Result<Generation, GenerateError> {
            self.calls += 1;
            if self.fail_on.is_some_and(|f| user.contains(f)) {
                return Err(GenerateError::QuestionTooLong {
                    prompt_tokens: 5000,
                    max_tokens: 1024,
                    n_ctx: 4096,
                });
            }
            let item = if grammar.contains("\"0\" | \"1\"") {
                r#"{"reason":"","verdict":1}"#
            } else {
                r#"{"reason":"","verdict":"yes"}"#
            };
            let key = grammar.split("\\\"").nth(1).unwrap_or("");
            let text = if grammar.contains("noncommittal") {
                r#"{"question":"Which port?","noncommittal":0}"#.to_string()
            } else if grammar.contains("{\\\"statement\\\":") {
                let verdict = if item.contains("yes") { "\"yes\"" } else { "1" };
                format!(
                    "{{\"{key}\":[{{\"statement\":\"s\",\"reason\":\"\",\"verdict\":{verdict}}}]}}"
                )
            } else if grammar.starts_with("root ::= \"{\\\"reason") {
                item.to_string()
            } else if let Some(rest) = grammar.split("item (\",\" item){").nth(1) {
                // exactly n items: the grammar repeats the item `{n-1,n-1}` times after the first
                let n = rest
                    .split(',')
                    .next()
                    .and_then(|d| d.parse::<usize>().ok())
                    .unwrap()
                    + 1;
                format!("{{\"{key}\":[{}]}}", vec![item; n].join(","))
            } else {
                format!("{{\"{key}\":[\"one fact\"]}}")
            };
            Ok(Generation {
                text,
                raw: String::new(),
                prompt_tokens: 10,
                completion_tokens: 5,
                ttft_s: 0.1,
                response_s: 0.2,
                contexts_used: 0,
                stopped_by: StopReason::Eos,
            })
        }
        fn max_tokens(&self) -> u32 {
            1024
        }
    }

    struct Unit;
    impl TextEmbedder for Unit {
        fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
            Ok(texts.iter().map(|_| vec![1.0, 0.0]).collect())
        }
    }

    fn job<'a>(
        store: &'a Store,
        answers: &'a [AnswerRecord],
        chunks: &'a ChunkTexts,
        settings: &'a JudgeSettings,
        judge: &'a str,
        retry_errors: bool,
    ) -> JudgeJob<'a> {
        JudgeJob {
            store,
            answers,
            chunks,
            settings,
            judge,
            scope: JudgeScope {
                retry_errors,
                questions: None,
            },
        }
    }

    /// [`Agreeable`], keeping the questions of the calls it was asked, in order.
    struct Recording {
        inner: Agreeable,
        questions: Vec<String>,
    }

    impl JudgeModel for Recording {
        fn complete(
            &mut self,
            system: &str,
            user: &str,
            grammar: &str,
        ) -> Result<Generation, GenerateError> {
            let q = user
                .split("question ")
                .nth(1)
                .and_then(|r| r.split('?').next())
                .unwrap_or("");
            self.questions.push(q.to_string());
            self.inner.complete(system, user, grammar)
        }
        fn max_tokens(&self) -> u32 {
            self.inner.max_tokens()
        }
    }

    /// [`Agreeable`] that, at its first call, edits q1's expected answer through a connection
    /// of its own, as a concurrent `orchestrate run` re-scoring an edited QA file would.
    struct EditsMeanwhile {
        inner: Agreeable,
        db: PathBuf,
    }

    impl JudgeModel for EditsMeanwhile {
        fn complete(
            &mut self,
            system: &str,
            user: &str,
            grammar: &str,
        ) -> Result<Generation, GenerateError> {
            if self.inner.calls == 0 {
                rusqlite::Connection::open(&self.db)
                    .unwrap()
                    .execute(
                        "UPDATE answers SET expected_answer = 'edited' WHERE question_id = 'q1'",
                        [],
                    )
                    .unwrap();
            }
            self.inner.complete(system, user, grammar)
        }
        fn max_tokens(&self) -> u32 {
            self.inner.max_tokens()
        }
    }

    #[test]
    fn a_judgment_of_an_answer_changed_meanwhile_is_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (s, answers, chunks) = store_with_answers(dir.path());
        let mut settings = JudgeSettings::defaults(dir.path());
        settings.metrics = vec![JudgeMetric::Correctness];
        let mut model = EditsMeanwhile {
            inner: Agreeable {
                calls: 0,
                fail_on: None,
            },
            db: s.path().to_path_buf(),
        };
        let sum = job(&s, &answers, &chunks, &settings, "j", false)
            .run(&mut model, &Unit, &mut |_| {})
            .unwrap();
        assert_eq!((sum.total, sum.ok, sum.changed), (2, 1, 1));
        let j = s.judgments().unwrap();
        assert_eq!(
            j.iter().map(|j| j.question_id.as_str()).collect::<Vec<_>>(),
            vec!["q2"],
            "the verdict against the old reference is not kept"
        );
        assert!(summary_text("x", &sum).contains("1 judgments were not stored"));
    }

    #[test]
    fn judging_goes_question_by_question_and_questions_limits_every_cell_alike() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("x.sqlite")).unwrap();
        let ids = ["q1", "q2", "q3", "q4"];
        let mut answers = Vec::new();
        // cell-major, as stored
        for model in ["m", "n"] {
            for q in ids {
                let a = crate::report::aggregate::tests::answer(model, 500, "dense", q, 0.5, 1.0);
                s.insert_test_answer(&a.cell.cell_id, q);
                answers.push(a);
            }
        }
        let mut settings = JudgeSettings::defaults(dir.path());
        settings.metrics = vec![JudgeMetric::Correctness];
        let chunks = ChunkTexts::new();
        let mut model = Recording {
            inner: Agreeable {
                calls: 0,
                fail_on: None,
            },
            questions: Vec::new(),
        };
        // by sha256 of the id, not by stored order
        let mut order: Vec<String> = ids.map(String::from).to_vec();
        order.sort_by_key(|id| <[u8; 32]>::from(Sha256::digest(id.as_bytes())));
        assert_ne!(order, ids.map(String::from).to_vec(), "q1..q4 are shuffled");
        let mut first = job(&s, &answers, &chunks, &settings, "j", false);
        first.scope.questions = Some(2);
        let sum = first.run(&mut model, &Unit, &mut |_| {}).unwrap();
        // 2 questions x 2 cells now, the other 4 judgments left for later
        assert_eq!((sum.total, sum.ok, sum.deferred), (4, 4, 4));
        // the two cells answered each question in turn; correctness prompts are distinct per
        // cell only by answer, so the second cell's call of a question is a cache hit
        assert_eq!(model.questions, vec![order[0].clone(), order[1].clone()]);
        let judged: std::collections::BTreeSet<(String, String)> = s
            .judgments()
            .unwrap()
            .into_iter()
            .map(|j| (j.cell_id, j.question_id))
            .collect();
        let expected: std::collections::BTreeSet<(String, String)> = ["m", "n"]
            .iter()
            .flat_map(|m| {
                order[..2]
                    .iter()
                    .map(move |q| (format!("{m}-500-dense"), q.clone()))
            })
            .collect();
        assert_eq!(
            judged, expected,
            "every cell judged on the same 2 questions"
        );
        assert!(
            summary_text("x", &sum).contains("4 judgments of the answers to the other questions")
        );
        // a pass without the limit judges the rest, in the same order
        let sum = job(&s, &answers, &chunks, &settings, "j", false)
            .run(&mut model, &Unit, &mut |_| {})
            .unwrap();
        assert_eq!((sum.total, sum.already, sum.ok, sum.deferred), (8, 4, 4, 0));
        assert_eq!(model.questions[2..], order[2..]);
    }

    /// A store with ok answers q1, q2 of one cell, their records (given chunks 0 and 1 of index
    /// `idx`) and those chunks' texts.
    fn store_with_answers(dir: &Path) -> (Store, Vec<AnswerRecord>, ChunkTexts) {
        let s = Store::open(&dir.join("x.sqlite")).unwrap();
        let mut answers = Vec::new();
        for q in ["q1", "q2"] {
            let mut a = crate::report::aggregate::tests::answer("m", 500, "dense", q, 0.5, 1.0);
            s.insert_test_answer(&a.cell.cell_id, q);
            a.index_dir = Some("idx".into());
            a.chunk_ids = vec![0, 1];
            a.contexts_used = Some(2);
            answers.push(a);
        }
        let mut chunks = ChunkTexts::new();
        chunks.insert(("idx".into(), 0), "DIRport = 9101".into());
        chunks.insert(("idx".into(), 1), "The Director".into());
        (s, answers, chunks)
    }

    #[test]
    fn a_second_pass_asks_nothing_and_values_join_the_answer_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let (s, answers, chunks) = store_with_answers(dir.path());
        let mut settings = JudgeSettings::defaults(dir.path());
        settings.profiles = vec![Profile::Ragas, Profile::DeepEval];
        let mut model = Agreeable {
            calls: 0,
            fail_on: None,
        };
        let mut ticks = 0;
        let first = job(&s, &answers, &chunks, &settings, "j1", false)
            .run(&mut model, &Unit, &mut |p| {
                assert_eq!(p.total, 20);
                ticks += 1;
                assert_eq!(p.done(), ticks);
            })
            .unwrap();
        assert_eq!(first.total, 2 * 10);
        assert_eq!((first.ok, first.errors, first.undefined), (20, 0, 0));
        assert_eq!(ticks, 20);
        assert!(first.calls.calls > 0 && first.calls.calls == model.calls);
        // Correctness's call is the same in both profiles: asked once per answer.
        assert!(first.calls.cached >= 2);
        let stored = s.test_metrics(&answers[0].cell.cell_id, "q1");
        assert_eq!(stored.get("correctness_ragas"), Some(&1.0));
        assert_eq!(stored.get("faithfulness_deepeval"), Some(&1.0));

        let before = model.calls;
        let second = job(&s, &answers, &chunks, &settings, "j1", false)
            .run(&mut model, &Unit, &mut |_| {})
            .unwrap();
        assert_eq!((second.already, second.calls.calls), (20, 0));
        assert_eq!(model.calls, before);
        // Another judge re-judges, but identical calls of the same judge come from the cache.
        let mut fresh = JudgeSummary::default();
        for _ in 0..2 {
            fresh = job(&s, &answers, &chunks, &settings, "j2", false)
                .run(&mut model, &Unit, &mut |_| {})
                .unwrap();
        }
        assert_eq!(fresh.already, 20);
    }

    #[test]
    fn failures_are_stored_per_answer_and_counted_not_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (s, mut answers, chunks) = store_with_answers(dir.path());
        let mut settings = JudgeSettings::defaults(dir.path());
        settings.metrics = vec![JudgeMetric::Correctness, JudgeMetric::ContextRecall];
        // q2's chunks are gone from the index: context recall cannot be judged there.
        answers[1].chunk_ids = vec![7];
        answers[1].contexts_used = Some(1);
        let mut model = Agreeable {
            calls: 0,
            fail_on: None,
        };
        let sum = job(&s, &answers, &chunks, &settings, "j", false)
            .run(&mut model, &Unit, &mut |_| {})
            .unwrap();
        assert_eq!((sum.ok, sum.errors), (3, 1));
        let j = s.judgments().unwrap();
        let err = j
            .iter()
            .find(|j| j.status == JudgmentStatus::Error)
            .expect("the error is stored");
        assert_eq!(
            (err.question_id.as_str(), err.metric.as_str()),
            ("q2", "context_recall")
        );
        assert!(err.detail.as_deref().unwrap().contains("chunk 7"));
        let stored = s.test_metrics(&answers[1].cell.cell_id, "q2");
        assert!(!stored.contains_key("context_recall") && stored.contains_key("correctness"));
        // Errors are not retried unless asked; with retry they are judged again.
        let again = job(&s, &answers, &chunks, &settings, "j", true)
            .run(&mut model, &Unit, &mut |_| {})
            .unwrap();
        assert_eq!((again.already, again.errors), (3, 1));
    }

    #[test]
    fn agreement_pairs_distinct_labelled_answers_per_judge_and_metric() {
        let labels: Vec<Label> = [
            ("q1", "9101", true),
            ("q1", "9102", false),
            ("q2", "seconds", true),
        ]
        .iter()
        .map(|(q, a, c)| Label {
            question_id: q.to_string(),
            answer: a.to_string(),
            correct: *c,
        })
        .collect();
        let row =
            |judge: &str, metric: &str, q: &str, a: &str, v: f64| crate::store::JudgedAnswer {
                judge: judge.to_string(),
                metric: metric.to_string(),
                question_id: q.to_string(),
                answer: a.to_string(),
                value: v,
            };
        let judged = vec![
            row("j", "correctness", "q1", "9101", 1.0),
            // the same text in another cell counts once
            row("j", "correctness", "q1", "9101", 1.0),
            row("j", "correctness", "q1", "9102", 1.0),
            row("j", "correctness", "q2", "seconds", 1.0),
            row("j", "correctness", "q2", "unlabelled", 0.0),
            row("j", "faithfulness", "q1", "9101", 0.0),
            row("k", "correctness_deepeval", "q1", "9102", 0.0),
        ];
        let a = agreement_with_labels(&judged, &labels);
        assert_eq!(a.len(), 2);
        let (judge, metric, g) = &a[0];
        assert_eq!((judge.as_str(), metric.as_str()), ("j", "correctness"));
        assert_eq!((g.n, g.both_yes, g.only_first), (3, 2, 1));
        assert_eq!((a[1].2.n, a[1].2.both_no), (1, 1));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("l.jsonl");
        std::fs::write(&f, "{\"question_id\":\"q1\",\"answer\":\"x\",\"correct\":true}\n\n{\"question_id\":\"q2\"}\n").unwrap();
        let e = load_labels(&f).unwrap_err().to_string();
        assert!(e.contains("l.jsonl:3:") && e.contains("correct"), "{e}");
    }

    #[test]
    fn retrieval_only_rows_get_only_the_context_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let (s, mut answers, chunks) = store_with_answers(dir.path());
        for a in &mut answers {
            a.cell.model = crate::cell::RETRIEVAL_ONLY.to_string();
            a.answer.clear();
        }
        // as stored: a retrieval-only row has no answer text
        rusqlite::Connection::open(s.path())
            .unwrap()
            .execute("UPDATE answers SET answer = ''", [])
            .unwrap();
        let settings = JudgeSettings::defaults(dir.path());
        let mut model = Agreeable {
            calls: 0,
            fail_on: None,
        };
        let sum = job(&s, &answers, &chunks, &settings, "j", false)
            .run(&mut model, &Unit, &mut |_| {})
            .unwrap();
        // 2 answers x {context_precision, context_recall}
        assert_eq!((sum.total, sum.ok), (4, 4));
        let names: std::collections::BTreeSet<String> = s
            .judgments()
            .unwrap()
            .into_iter()
            .map(|j| j.metric)
            .collect();
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            vec!["context_precision", "context_recall"]
        );
    }

    #[test]
    fn a_model_failure_is_a_stored_error() {
        let dir = tempfile::tempdir().unwrap();
        let (s, answers, chunks) = store_with_answers(dir.path());
        let mut settings = JudgeSettings::defaults(dir.path());
        settings.metrics = vec![JudgeMetric::Correctness];
        let mut model = Agreeable {
            calls: 0,
            fail_on: Some("question q2?"),
        };
        let sum = job(&s, &answers, &chunks, &settings, "j", false)
            .run(&mut model, &Unit, &mut |_| {})
            .unwrap();
        assert_eq!((sum.ok, sum.errors), (1, 1));
        let j = s.judgments().unwrap();
        // the stored error names the judge's prompt and its setting, not "the question"
        let detail = j[1].detail.as_deref().unwrap();
        assert!(
            detail.starts_with("judge prompt at step correctness needs")
                && detail.contains("n_ctx 4096: raise n_ctx in [judge]"),
            "{j:?}"
        );
    }
}
