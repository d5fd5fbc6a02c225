//! The first process logs after start-up, kept so that each new client gets them before live
//! traffic (as eCapture does), bounded so that a chatty process cannot grow it.

/// The kept start-up lines, in order.
#[derive(Debug, Clone)]
pub struct StartupLog {
    lines: Vec<String>,
    limit: usize,
    sealed: bool,
}

impl StartupLog {
    pub fn new(limit: usize) -> Self {
        Self {
            lines: Vec::new(),
            limit,
            sealed: false,
        }
    }

    /// Start-up is over: later lines are live only.
    pub fn seal(&mut self) {
        self.sealed = true;
    }

    /// Keeps `line` if start-up is not over and the buffer has room; true if it was kept.
    pub fn offer(&mut self, line: &str) -> bool {
        let room = !self.sealed && self.lines.len() < self.limit;
        if room {
            self.lines.push(line.to_owned());
        }
        room
    }

    pub fn lines(&self) -> &[String] {
        &self.lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_lines_in_order_up_to_the_limit_and_no_more() {
        let mut log = StartupLog::new(2);
        assert!(log.offer("a"));
        assert!(log.offer("b"));
        assert!(!log.offer("c"));
        assert_eq!(log.lines(), ["a", "b"]);
    }

    #[test]
    fn keeps_nothing_once_sealed() {
        let mut log = StartupLog::new(8);
        log.offer("a");
        log.seal();
        assert!(!log.offer("b"));
        assert_eq!(log.lines(), ["a"]);
    }
}
