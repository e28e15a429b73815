//! `state_words!`: an enum whose values are stored as fixed words in the
//! state files (`"in_progress"`, `"usage_limit"`). Each word is written
//! once, in the enum's definition; the serde rename, the list of allowed
//! words (for the shape check's error message) and `as_str` all come from
//! it, so they cannot drift apart.

/// Defines `pub enum NAME { Variant = "word", … }` with miniserde's
/// derives, `NAMES` (every word, in order) and `as_str`.
macro_rules! state_words {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident = $word:tt, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(miniserde::Serialize, miniserde::Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $( $(#[$variant_meta])* #[serde(rename = $word)] $variant, )+
        }

        impl $name {
            /// Every word the file may hold, in the order messages list them.
            pub const NAMES: &'static [&'static str] = &[$($word),+];

            /// The word stored in the file (and shown to people).
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $word, )+
                }
            }
        }
    };
}

pub(crate) use state_words;
