//! Actions that ride on SSML marks: `<mark name="expression:smile"/>`, `gesture:nod`,
//! `card:show:SKU`, `card:hide`. Both processes read mark names here, so a script is checked
//! against exactly what the stage performs.
//!
//! Each modality has its policy: speech is overridden and resumed (the scheduler's business);
//! an expression replaces the one before it (cross-fading); gestures run in parallel with each
//! other and with speech, each to its own end; one product card is up at a time.

/// Facial expressions, each a weight of the avatar's smile (negative: corners down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expression {
    Neutral,
    Smile,
    Happy,
    Sad,
}

/// Head gestures every avatar can perform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gesture {
    /// Two small nods: yes.
    Nod,
    /// Two small turns: no.
    Shake,
    /// The head tilts to one side and back: curiosity, warmth.
    Tilt,
    /// The right hand rises and waves: hello, goodbye (avatars without arms tilt the head).
    Wave,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Expression(Expression),
    Gesture(Gesture),
    ShowCard { sku: String },
    HideCard,
}

impl Expression {
    pub const NAMES: [&'static str; 4] = ["neutral", "smile", "happy", "sad"];

    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "neutral" => Self::Neutral,
            "smile" => Self::Smile,
            "happy" => Self::Happy,
            "sad" => Self::Sad,
            _ => return None,
        })
    }

    /// The smile weight this expression holds.
    pub fn smile(self) -> f32 {
        match self {
            Self::Neutral => 0.0,
            Self::Smile => 0.6,
            Self::Happy => 1.0,
            Self::Sad => -0.7,
        }
    }
}

impl Gesture {
    pub const NAMES: [&'static str; 4] = ["nod", "shake", "tilt", "wave"];

    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "nod" => Self::Nod,
            "shake" => Self::Shake,
            "tilt" => Self::Tilt,
            "wave" => Self::Wave,
            _ => return None,
        })
    }
}

impl Action {
    /// The action a mark names: `Ok(None)` for a plain mark (no action prefix), `Err` with the
    /// reason for an action prefix with an unknown name.
    pub fn from_mark(mark: &str) -> Result<Option<Action>, String> {
        let unknown = |kind: &str, name: &str, known: &[&str]| {
            format!("mark `{kind}:{name}`: no such {kind}; use one of {}", known.join(", "))
        };
        let action = if let Some(name) = mark.strip_prefix("expression:") {
            Action::Expression(
                Expression::from_name(name).ok_or_else(|| unknown("expression", name, &Expression::NAMES))?,
            )
        } else if let Some(name) = mark.strip_prefix("gesture:") {
            Action::Gesture(Gesture::from_name(name).ok_or_else(|| unknown("gesture", name, &Gesture::NAMES))?)
        } else if let Some(sku) = mark.strip_prefix("card:show:") {
            if sku.is_empty() {
                return Err("mark `card:show:` needs a product sku after it".into());
            }
            Action::ShowCard { sku: sku.to_string() }
        } else if mark == "card:hide" {
            Action::HideCard
        } else if mark.starts_with("card:") {
            return Err(format!("mark `{mark}`: use card:show:SKU or card:hide"));
        } else {
            return Ok(None);
        };
        Ok(Some(action))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_name_actions_or_are_plain() {
        assert_eq!(Action::from_mark("expression:smile"), Ok(Some(Action::Expression(Expression::Smile))));
        assert_eq!(Action::from_mark("gesture:nod"), Ok(Some(Action::Gesture(Gesture::Nod))));
        assert_eq!(Action::from_mark("card:show:KET-100"), Ok(Some(Action::ShowCard { sku: "KET-100".into() })));
        assert_eq!(Action::from_mark("card:hide"), Ok(Some(Action::HideCard)));
        assert_eq!(Action::from_mark("chapter-2"), Ok(None));
        let err = Action::from_mark("gesture:moonwalk").unwrap_err();
        assert!(err.contains("nod, shake, tilt, wave"), "{err}");
        assert!(Action::from_mark("expression:").is_err());
        assert!(Action::from_mark("card:flip").is_err());
    }
}
