// Synthetic long-context tasks the language host is trained on from scratch
// and NAMMs are evolved on: retrieval and induction-style questions over a
// context of a requested length, full of forgettable filler, look-alike
// distractors and superseded values, with short answers (1-6 tokens; a
// variable walk restates its assignments in up to kMaxAnswerTokens).
//
// Every example is a pure function of (task, split, index, context_tokens):
// the RNG seed is an injective packing of those four numbers pushed through a
// bijective 64-bit mixer, so the train, validation and test seeds can never
// coincide, and every random draw uses std::mt19937_64 with bounded draws and
// shuffles written here (the standard distributions are implementation-defined),
// so the ids are the same on every platform.
//
// Prompt layout (ids in builtin_tokenizer()):
//   <bos> instruction . body ... <q> question <a>
// and prompt.size() == context_tokens exactly. The answer follows <a>; a
// training sequence appends <eos> (training_sequence()).
//
// Tasks (names as in task_names()):
//   kv_retrieval       "k1 k2 : d d d ." pairs, no two keys sharing a word;
//                      <q> value of k1 k2 ? -> d d d
//   kv_multi           same, two keys asked -> d d d d d d (metric: token F1)
//   kv_update          keys reassigned several times, no two keys sharing a
//                      word; the latest value counts
//   needle             "the secret of NAME is d d d d ." among look-alike
//                      statements (other names, other attributes) and filler
//   passage_retrieval  "... paragraph d d d ." paragraphs with 4 keywords each,
//                      closed by their id;
//                      <q> which paragraph has k1 k2 k3 k4 ? -> d d d
//   variable_tracking  "var a = d d d ." "var b = a ." chains with decoy chains;
//                      <q> what is var c ? -> c = b , b = a , a = d d d
//                      (each assignment restated on the walk back to the
//                      root; a root asked -> a = d d d)
//   counting           names sprinkled in filler; <q> how many NAME ? -> d
//
// Redundant tasks (redundant_task_names(); not in the evaluated suite, so its
// tables and pinned ids stay as they are): the body is one boilerplate block
// of 24-48 filler tokens restated until the body is full (one copy in four a
// near-duplicate, one word swapped), as real long inputs repeat headers,
// templates and static frames; the facts that matter are sparse and spread.
//   needle_boilerplate needle's statements and look-alikes in boilerplate;
//                      needle's question and answer
//   kv_repeated        body/400 keys (2-40), each "k1 k2 : d d d ." stated three
//                      times at random places; kv_retrieval's question
//
// Share of prompt tokens by role, mean over 16 validation examples at 4,096
// tokens (evidence / distractor / filler, the instruction counted as filler;
// then redundant: spans restating an earlier span, which overlap the other
// roles; what is left is the question):
//   kv_retrieval        0.2% / 27.2% / 72.5% ; redundant 0
//   kv_multi            0.3% / 27.0% / 72.4% ; redundant 0
//   kv_update           0.2% / 27.2% / 72.5% ; redundant 0
//   needle              0.2% /  6.6% / 92.9% ; redundant 0
//   passage_retrieval   0.7% / 88.6% / 10.5% ; redundant 0
//   variable_tracking   0.5% / 14.1% / 85.3% ; redundant 0
//   counting            0.1% /  3.3% / 96.5% ; redundant 0
//   variable_lookup     0.1% /  9.3% / 90.4% ; redundant 0
//   needle_boilerplate  0.2% /  6.6% / 92.9% ; redundant 91.3%
//   kv_repeated         0.5% /  4.6% / 94.7% ; redundant 96.8%
// (measured with a program that sums the spans of make_examples(task,
// kValidation, 0, 16, 4096) by role)
//
// No torch here: ids are plain int64 vectors.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace namm {

/// Which disjoint seed range an example comes from.
enum class Split { kTrain = 0, kValidation = 1, kTest = 2 };

/// "train", "validation", "test".
const char* to_string(Split split);
/// Parses "train", "validation" (or "val"), "test"; throws std::invalid_argument.
Split parse_split(const std::string& text);

/// The longest answer any task makes: a variable walk of three hops,
/// "d = c , c = b , b = a , a = 1 2 3". Greedy decoding stops here by default.
constexpr int64_t kMaxAnswerTokens = 17;

/// How a prediction is scored against the answer.
enum class TaskMetric {
  kExact,  ///< 1 if the trimmed prediction equals the answer, else 0.
  kF1,     ///< token-multiset F1 between trimmed prediction and answer.
};

/// A half-open range [begin, end) of prompt token positions.
struct TokenSpan {
  int64_t begin = 0;
  int64_t end = 0;
};

/// One generated example.
struct TaskExample {
  std::string task;                    ///< task name.
  Split split = Split::kTrain;
  int64_t index = 0;                   ///< example index within (task, split).
  uint64_t seed = 0;                   ///< the RNG seed it was generated from.
  std::vector<int64_t> prompt;         ///< [T] ids: <bos> ... <q> question <a>.
  std::vector<int64_t> answer;         ///< [A] ids, 1..kMaxAnswerTokens, no <eos>.
  std::string answer_text;             ///< answer decoded ("4 1 2").
  std::vector<TokenSpan> evidence;     ///< prompt spans needed to answer (target record(s)).
  std::vector<TokenSpan> distractors;  ///< prompt spans of competing records (look-alikes,
                                       ///< other keys, superseded values, decoy chains).
  std::vector<TokenSpan> redundant;    ///< prompt spans that restate an earlier span verbatim
                                       ///< or nearly (boilerplate copies, restated records;
                                       ///< redundant tasks only); they may also be evidence.
  int64_t num_distractors = 0;         ///< distractors.size().
  int64_t num_lookalikes = 0;          ///< distractors built to resemble the evidence.
  int64_t question_begin = 0;          ///< position of <q> in the prompt.
};

/// The evaluated suite's task names, in a fixed order (new tasks are only
/// ever appended): what eval-text, evolve and train-lm use by default.
const std::vector<std::string>& task_names();

/// task_names() and the training-only curriculum tasks after them:
///   variable_lookup    "var a = b ." (b never assigned) and "var a = d d d ."
///                      single assignments; <q> what is var a ? -> a = b
///                      (one name-valued lookup in variable_tracking's form)
/// ... and the redundant tasks after those (redundant_task_names()).
/// Every function here accepts them; only train-lm's --tasks lists them.
const std::vector<std::string>& training_task_names();

/// The tasks whose body is mostly repetition (needle_boilerplate,
/// kv_repeated): evaluated or evolved on when named (eval-text --tasks,
/// evolve --tasks), never by default.
const std::vector<std::string>& redundant_task_names();

/// The metric a task is scored with (kF1 for kv_multi, kExact otherwise);
/// throws std::invalid_argument for an unknown task.
TaskMetric task_metric(const std::string& task);

/// The smallest context_tokens make_example accepts for a task.
int64_t min_context_tokens(const std::string& task);

/// The seed of one example: bijective mix of (split, task, context_tokens, index)
/// packed into 2 + 6 + 20 + 36 bits; throws std::invalid_argument if a value
/// does not fit (index >= 2^36, context_tokens >= 2^20).
uint64_t example_seed(const std::string& task, Split split, int64_t index, int64_t context_tokens);

/// Generates one example whose prompt has exactly context_tokens ids.
/// Throws std::invalid_argument for an unknown task, a negative index or
/// context_tokens below min_context_tokens(task).
TaskExample make_example(const std::string& task, Split split, int64_t index, int64_t context_tokens);

/// Examples first_index .. first_index + count - 1 of one task and split.
std::vector<TaskExample> make_examples(const std::string& task, Split split, int64_t first_index,
                                       int64_t count, int64_t context_tokens);

/// prompt + answer + <eos>: [T + A + 1] ids for teacher-forced training; the
/// answer's loss positions are prompt.size() - 1 .. prompt.size() + A - 1.
std::vector<int64_t> training_sequence(const TaskExample& example);

/// One more question about an example's context, with its answer.
struct FollowUp {
  std::vector<int64_t> question;  ///< <q> ... <a>, in the task's own question form.
  std::vector<int64_t> answer;    ///< the answer ids, no <eos>.
};

/// min(max_questions, N) further questions about the N other records of the
/// same context (other keys, other names, other chains, other paragraphs),
/// each in the task's question form and with its correct answer; never the
/// question the example already asks. Drawn with replacement, so the
/// questions asked so far never rule an answer in or out. Read off the
/// finished prompt, so the example itself is unchanged; the choice is a pure
/// function of the example's seed.
/// Training uses them to supervise many retrievals per context instead of one.
std::vector<FollowUp> follow_up_questions(const TaskExample& example, int64_t max_questions);

/// prompt + answer + <eos>, then question + answer + <eos> for each follow-up.
/// answer_spans (if given) receives the [begin, end) positions in the result
/// of every answer and its closing <eos>, first the example's own.
std::vector<int64_t> training_sequence(const TaskExample& example, const std::vector<FollowUp>& follow_ups,
                                       std::vector<TokenSpan>* answer_spans = nullptr);

/// A prediction cut at its first <eos> or <pad> (generation may run on).
std::vector<int64_t> trim_prediction(const std::vector<int64_t>& prediction);

/// 1.0 if trim_prediction(prediction) == answer, else 0.0.
double score_exact(const std::vector<int64_t>& prediction, const std::vector<int64_t>& answer);

/// Token F1 over multisets: 2PR / (P + R) of trim_prediction(prediction) vs answer;
/// 1.0 when both are empty, 0.0 when exactly one is.
double score_f1(const std::vector<int64_t>& prediction, const std::vector<int64_t>& answer);

/// The task's own metric (task_metric) applied to a prediction.
double score_task(const std::string& task, const std::vector<int64_t>& prediction,
                  const std::vector<int64_t>& answer);

/// A context-length schedule for training: lengths grow geometrically from
/// min_tokens to max_tokens as progress goes 0 -> 1, rounded down to a
/// multiple of `multiple` (never below min_tokens).
struct Curriculum {
  int64_t min_tokens = 128;
  int64_t max_tokens = 2048;
  int64_t multiple = 64;

  /// context_tokens at progress in [0, 1] (clamped).
  int64_t context_tokens(double progress) const;
};

}  // namespace namm
