//! The gates that stop a panic cascade: the one cooldown verdict, the circuit
//! breaker, the cadence guard and the MLX process lock.
