package org.careway.fhirserver;

import ca.uhn.fhir.interceptor.api.Hook;
import ca.uhn.fhir.interceptor.api.Interceptor;
import ca.uhn.fhir.interceptor.api.Pointcut;
import ca.uhn.fhir.jpa.dao.tx.IHapiTransactionService;
import ca.uhn.fhir.rest.server.util.ISearchParamRegistry;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.transaction.annotation.Propagation;
import org.springframework.transaction.support.TransactionSynchronization;
import org.springframework.transaction.support.TransactionSynchronizationManager;

/**
 * Rebuilds the search-parameter registry right after a transaction that created, updated or
 * deleted a SearchParameter commits, so the parameter can be used by the very next request.
 *
 * <p>WHY: HAPI's SearchParameter DAO does the same, but guards it with a single server-wide flag
 * that it only resets in {@code afterCommit}. When a transaction containing a SearchParameter
 * rolls back (e.g. a transaction Bundle whose later entry fails), the flag stays set and HAPI
 * never refreshes immediately again; new SearchParameters then wait for the background refresher
 * (every 10 s). Verified on 8.8.0. Tests create SearchParameters and use them at once, so we
 * refresh deterministically ourselves.</p>
 *
 * <p>The refresh runs after commit (the registry reads SearchParameters from the database, so it
 * must see the committed row), once per transaction, outside the finished transaction, and on
 * the request thread: when the create/update/delete response is sent, the registry is current.</p>
 */
@Interceptor
public class SearchParameterRefresher {
	private static final Logger ourLog = LoggerFactory.getLogger(SearchParameterRefresher.class);

	private final ISearchParamRegistry mySearchParamRegistry;
	private final IHapiTransactionService myTransactionService;

	public SearchParameterRefresher(
			ISearchParamRegistry theSearchParamRegistry, IHapiTransactionService theTransactionService) {
		mySearchParamRegistry = theSearchParamRegistry;
		myTransactionService = theTransactionService;
	}

	@Hook(Pointcut.STORAGE_PRECOMMIT_RESOURCE_CREATED)
	public void created(IBaseResource theResource) {
		maybeRefresh(theResource);
	}

	@Hook(Pointcut.STORAGE_PRECOMMIT_RESOURCE_UPDATED)
	public void updated(IBaseResource theOldResource, IBaseResource theNewResource) {
		maybeRefresh(theNewResource);
	}

	@Hook(Pointcut.STORAGE_PRECOMMIT_RESOURCE_DELETED)
	public void deleted(IBaseResource theResource) {
		maybeRefresh(theResource);
	}

	private void maybeRefresh(IBaseResource theResource) {
		if (theResource == null || !"SearchParameter".equals(theResource.fhirType())) {
			return;
		}
		if (!TransactionSynchronizationManager.isSynchronizationActive()) {
			refresh();
			return;
		}
		// One refresh per transaction, however many SearchParameters it writes.
		boolean alreadyRegistered = TransactionSynchronizationManager.getSynchronizations().stream()
				.anyMatch(AfterCommitRefresh.class::isInstance);
		if (!alreadyRegistered) {
			TransactionSynchronizationManager.registerSynchronization(new AfterCommitRefresh());
		}
	}

	private void refresh() {
		try {
			// Outside any transaction, as a system request, like HAPI's own refresh.
			myTransactionService
					.withSystemRequest()
					.withPropagation(Propagation.NOT_SUPPORTED)
					.execute(mySearchParamRegistry::forceRefresh);
			ourLog.debug("SearchParameter changed: search-parameter registry refreshed");
		} catch (RuntimeException e) {
			// The write itself has committed; do not turn it into an error. The background
			// refresher picks the change up within about 10 s.
			ourLog.warn("Immediate search-parameter registry refresh failed; HAPI will retry", e);
			mySearchParamRegistry.requestRefresh();
		}
	}

	private final class AfterCommitRefresh implements TransactionSynchronization {
		@Override
		public void afterCommit() {
			refresh();
		}
	}
}
