//! `swap_reasoning_content`: reasoning folded into `content` inside think
//! tags for clients that only render `content`, or a think block at the
//! start of `content` moved out to the reasoning field.

use std::sync::Arc;

use super::Piece;
use super::tags::{TagParser, TagSpec, push_merged};
use super::tools::Schemas;
use crate::config::parsers::{SwapMode, SwapSettings};

/// The compiled settings.
#[derive(Debug)]
pub struct SwapSpec {
    mode: SwapMode,
    open: String,
    close: String,
    newline: bool,
    /// The parser of `content_to_reasoning`.
    tags: Arc<TagSpec>,
}

impl SwapSpec {
    /// How reasoning is folded into content: (open, close, newline after
    /// close); `None` when this stage only moves think blocks out.
    pub fn folded_form(&self) -> Option<(&str, &str, bool)> {
        (self.mode != SwapMode::ContentToReasoning).then_some((
            self.open.as_str(),
            self.close.as_str(),
            self.newline,
        ))
    }

    pub fn new(s: &SwapSettings) -> SwapSpec {
        let open_tag = format!("<{}>", s.think_tag);
        let close_tag = format!("</{}>", s.think_tag);
        SwapSpec {
            mode: s.mode,
            open: format!("{}{}{}", s.think_open.prefix, open_tag, s.think_open.suffix),
            close: format!(
                "{}{}{}",
                s.think_close.prefix, close_tag, s.think_close.suffix
            ),
            newline: s.include_newline,
            tags: Arc::new(TagSpec::new(
                Some((open_tag, close_tag)),
                false,
                true,
                Vec::new(),
                0,
            )),
        }
    }
}

#[derive(Debug)]
enum Dir {
    Undecided,
    ToContent { in_think: bool },
    ToReasoning(Box<TagParser>),
}

impl Dir {
    /// `content_to_reasoning`: a think block at the start of content only.
    fn to_reasoning(spec: &SwapSpec) -> Dir {
        Dir::ToReasoning(Box::new(TagParser::new(
            spec.tags.clone(),
            Arc::new(Schemas::default()),
        )))
    }
}

/// The stage of one choice.
#[derive(Debug)]
pub struct Swap {
    spec: Arc<SwapSpec>,
    dir: Dir,
}

impl Swap {
    pub fn new(spec: Arc<SwapSpec>) -> Swap {
        let dir = match spec.mode {
            SwapMode::ReasoningToContent => Dir::ToContent { in_think: false },
            SwapMode::ContentToReasoning => Dir::to_reasoning(&spec),
            SwapMode::Auto => Dir::Undecided,
        };
        Swap { spec, dir }
    }

    pub fn errors(&self) -> &[String] {
        match &self.dir {
            Dir::ToReasoning(p) => &p.errors,
            _ => &[],
        }
    }

    pub fn push(&mut self, pieces: Vec<Piece>) -> Vec<Piece> {
        let mut out = Vec::with_capacity(pieces.len() + 1);
        for p in pieces {
            if matches!(self.dir, Dir::Undecided) {
                match &p {
                    Piece::Reasoning(_) => self.dir = Dir::ToContent { in_think: false },
                    Piece::Content(t) if !t.trim().is_empty() => {
                        self.dir = Dir::to_reasoning(&self.spec)
                    }
                    _ => {}
                }
            }
            match &mut self.dir {
                Dir::Undecided => push_merged(&mut out, p),
                Dir::ToContent { in_think } => match p {
                    Piece::Reasoning(t) => {
                        if !*in_think {
                            *in_think = true;
                            push_merged(&mut out, Piece::Content(self.spec.open.clone()));
                        }
                        push_merged(&mut out, Piece::Content(t));
                    }
                    Piece::Content(t) => {
                        if *in_think {
                            *in_think = false;
                            let mut close = self.spec.close.clone();
                            if self.spec.newline && !close.ends_with('\n') && !t.starts_with('\n') {
                                close.push('\n');
                            }
                            push_merged(&mut out, Piece::Content(close));
                        }
                        push_merged(&mut out, Piece::Content(t));
                    }
                    other => {
                        if *in_think {
                            *in_think = false;
                            push_merged(&mut out, Piece::Content(self.spec.close.clone()));
                        }
                        out.push(other);
                    }
                },
                Dir::ToReasoning(parser) => match p {
                    Piece::Content(t) => {
                        for q in parser.push(&t) {
                            push_merged(&mut out, q);
                        }
                    }
                    other => push_merged(&mut out, other),
                },
            }
        }
        out
    }

    pub fn finish(&mut self) -> Vec<Piece> {
        match &mut self.dir {
            Dir::ToContent { in_think: true } => {
                self.dir = Dir::ToContent { in_think: false };
                vec![Piece::Content(self.spec.close.clone())]
            }
            Dir::ToReasoning(parser) => parser.finish(),
            _ => Vec::new(),
        }
    }
}
