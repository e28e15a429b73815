//! Near spellings: which known word a mistyped one was probably meant to
//! be, for the "did you mean" hints of the command line and of rasen.yml.
//! It only compares words; it never formats a message or knows where the
//! words come from.

/// The nearest candidate to `word` if it is a likely typo of it: one edit
/// away for words of up to five letters, two for longer ones (`stats`,
/// `stauts` → `status`; but `bogus` is not `logs`).
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let allowed = if word.chars().count() <= 5 { 1 } else { 2 };
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= allowed && *d < word.chars().count())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance counting an insertion, a deletion, a substitution or a
/// swap of two neighbours as one edit (optimal string alignment), since
/// swapped letters are the commonest typo (`stpo`, `agnet`).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("status", "status"), 0);
        assert_eq!(edit_distance("stats", "status"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("stpo", "stop"), 1);
    }

    #[test]
    fn closest_allows_one_edit_in_short_words_and_two_in_long_ones() {
        assert_eq!(closest("xyz", &["run", "init"]), None);
        assert_eq!(closest("bogus", &["logs", "status"]), None);
        assert_eq!(closest("agnet", &["agent", "qa"]), Some("agent"));
        assert_eq!(closest("stauts", &["logs", "status"]), Some("status"));
    }

    #[test]
    fn a_word_that_is_all_edits_has_no_near_spelling() {
        assert_eq!(closest("a", &["b"]), None);
        assert_eq!(closest("qa", &["qb"]), Some("qb"));
    }

    #[test]
    fn closest_prefers_the_first_of_equally_near_candidates() {
        assert_eq!(closest("--forc", &["--force", "--form"]), Some("--force"));
    }
}
