//! Sentry's encrypted export format. (Being written.)
